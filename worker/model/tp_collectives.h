// The collectives a tensor-parallel stage of the model needs (DESIGN.md §3). Implemented over the
// worker's Comm (MPI or NCCL) and, in tests, by ranks that are threads of one process.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace olmo::model {

class TpCollectives {
 public:
  virtual ~TpCollectives() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In-place sum over the TP group; every rank ends with the same bits.
  virtual absl::Status AllReduceSum(float* data, int64_t n) = 0;
  // recv = each rank's `n` floats, concatenated in rank order (recv holds size() * n).
  virtual absl::Status AllGather(const float* send, int64_t n, float* recv) = 0;
};

}  // namespace olmo::model
