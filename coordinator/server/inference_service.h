// The client API (olmo.v1.Inference) over the Coordinator, with gRPC's callback API: handlers
// only validate and enqueue; each stream buffers and coalesces its events and keeps one write in
// flight, so a slow client never blocks the scheduler (DESIGN.md §1).
#pragma once

#include "coordinator/service/coordinator.h"
#include "olmo/v1/inference.grpc.pb.h"

namespace olmo::server {

class InferenceService final : public v1::Inference::CallbackService {
 public:
  explicit InferenceService(service::Coordinator* coordinator) : coordinator_(coordinator) {}

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* ctx, const v1::GenerateRequest* request) override;
  grpc::ServerWriteReactor<v1::GenerateResponse>* Chat(grpc::CallbackServerContext* ctx,
                                                       const v1::ChatRequest* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx,
                                     const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* ctx,
                                       const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* ctx,
                                         const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;
  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* ctx,
                                     const v1::GetStatsRequest* request,
                                     v1::Stats* response) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* ctx, const v1::AbortRequest* request,
                                  v1::AbortResponse* response) override;

 private:
  grpc::ServerWriteReactor<v1::GenerateResponse>* Start(
      grpc::CallbackServerContext* ctx, const std::string& request_id,
      absl::StatusOr<service::BuiltRequest> built);

  service::Coordinator* coordinator_;
};

// absl::Status -> grpc::Status (same code and message).
grpc::Status ToGrpc(const absl::Status& status);

}  // namespace olmo::server
