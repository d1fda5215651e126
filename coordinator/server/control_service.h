// The worker control API (olmo.v1.WorkerControl) over the Coordinator, with gRPC's synchronous
// API: one handler thread per attached group reads its Run stream; the group's scheduler thread
// writes plans to it (DESIGN.md §2).
#pragma once

#include "coordinator/service/coordinator.h"
#include "olmo/v1/control.grpc.pb.h"

namespace olmo::server {

class ControlService final : public v1::WorkerControl::Service {
 public:
  explicit ControlService(service::Coordinator* coordinator) : coordinator_(coordinator) {}

  grpc::Status Attach(grpc::ServerContext* ctx, const v1::AttachRequest* request,
                      v1::ShardPlan* response) override;
  grpc::Status Run(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<v1::CoordinatorMessage, v1::WorkerMessage>* stream) override;

 private:
  service::Coordinator* coordinator_;
};

}  // namespace olmo::server
