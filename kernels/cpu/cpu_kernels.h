// CPU implementations of the ops of kernels/ops.h. Each takes the op's params struct and the
// number of threads to use (OpenMP); results never depend on the thread count or on the number
// of rows in a call (batch invariance).
#pragma once

#include <memory>
#include <span>

#include "absl/status/statusor.h"
#include "kernels/ops.h"

namespace olmo::kernels::cpu {

// matmul.cc
absl::StatusOr<std::unique_ptr<PackedWeight>> PackWeight(std::span<const WeightView> parts,
                                                         MatmulPath path);
void Matmul(const MatmulParams& p, int num_threads);

// embedding.cc
void Embedding(const EmbeddingParams& p, int num_threads);
// rms_norm.cc (RmsNorm, SumSquares, RmsScale)
void RmsNorm(const RmsNormParams& p, int num_threads);
void SumSquares(const SumSquaresParams& p, int num_threads);
void RmsScale(const RmsScaleParams& p, int num_threads);
// rope.cc (also defines kernels::MakeRopeTable)
void Rope(const RopeParams& p, int num_threads);
// kv_write.cc
void KvWrite(const KvWriteParams& p, int num_threads);
// attention.cc
void Attention(const AttentionParams& p, int num_threads);
// swiglu.cc
void SwiGlu(const SwiGluParams& p, int num_threads);
// log_softmax.cc
void LogSoftmax(const LogSoftmaxParams& p, int num_threads);
// sample.cc (per-row helpers in sample_row.h)
void Sample(const SampleParams& p, int num_threads);
// sample_slice.cc
void SampleSlice(const SampleSliceParams& p, int num_threads);

}  // namespace olmo::kernels::cpu
