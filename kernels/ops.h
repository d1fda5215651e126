// The Ops interface: every numeric op the model runs, with its shapes and dtypes. The CPU backend
// (kernels/cpu) is the reference; the CUDA backend (kernels/cuda) implements the same contracts.
// Model code calls Ops, never a kernel directly (DESIGN.md §7.2).
//
// CPU backend contract: activations are f32; weights keep their checkpoint dtype (BF16/F32/F16)
// inside PackedWeight; every op is batch-invariant: a row's result never depends on how many
// rows are in the call or where the row sits (DESIGN.md §5).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "common/model_config.h"

namespace olmo::kernels {

// A row-major 2-D weight [rows = out features, cols = in features] as stored in the checkpoint.
struct WeightView {
  const void* data = nullptr;
  DType dtype = DType::kBF16;
  int64_t rows = 0;
  int64_t cols = 0;
};

// A weight prepared for Matmul by a backend (packed panels, device copy...). Owns its memory.
class PackedWeight {
 public:
  virtual ~PackedWeight() = default;
  virtual int64_t rows() const = 0;   // out features
  virtual int64_t cols() const = 0;   // in features
  virtual DType dtype() const = 0;    // storage dtype of the weights
  virtual int64_t bytes() const = 0;  // bytes read by one Matmul (the weight payload)
};

struct MatmulParams {
  const float* x = nullptr;  // f32 [m, w.cols()], row stride w.cols()
  int64_t m = 0;
  const PackedWeight* w = nullptr;
  float* y = nullptr;  // f32 [m, w.rows()], row stride w.rows()
};

struct EmbeddingParams {
  const int32_t* token_ids = nullptr;  // i32 [num_tokens]
  int64_t num_tokens = 0;
  WeightView table;         // [vocab_end - vocab_begin, hidden]: rows vocab_begin..vocab_end-1
  int64_t vocab_begin = 0;  // ids outside [vocab_begin, vocab_begin + table.rows) give zeros
  float* out = nullptr;     // f32 [num_tokens, hidden]
};

// out[r] = residual[r] + weight ⊙ x[r] / sqrt(mean(x[r]²) + eps)   (residual may be null -> 0).
// out may alias x or residual.
struct RmsNormParams {
  const float* x = nullptr;         // f32 [rows, dim]
  const float* residual = nullptr;  // f32 [rows, dim] or null
  const float* weight = nullptr;    // f32 [dim]
  float* out = nullptr;             // f32 [rows, dim]
  int64_t rows = 0;
  int64_t dim = 0;
  float eps = 1e-6f;
};

// Partial sum of squares of each row (for RMSNorm over a width split across TP ranks).
struct SumSquaresParams {
  const float* x = nullptr;  // f32 [rows, dim], row stride `stride`
  int64_t rows = 0;
  int64_t dim = 0;
  int64_t stride = 0;
  float* out = nullptr;  // f32 [rows]
};

// x[r, :dim] *= weight / sqrt(sum_sq[r] / full_dim + eps), in place. full_dim is the width of the
// whole (unsharded) vector whose squares sum_sq holds.
struct RmsScaleParams {
  float* x = nullptr;  // f32 [rows, dim], row stride `stride`
  int64_t rows = 0;
  int64_t dim = 0;
  int64_t stride = 0;
  const float* sum_sq = nullptr;  // f32 [rows]
  const float* weight = nullptr;  // f32 [dim]
  int64_t full_dim = 0;
  float eps = 1e-6f;
};

// One RoPE table (one per layer type): inverse frequencies and the cos/sin amplitude A.
struct RopeTable {
  std::vector<float> inv_freq;   // f32 [head_dim / 2], computed in f32 as HF does
  float attention_scale = 1.0f;  // A: 1 for default RoPE, YaRN attention_factor otherwise
};
// HF `_compute_default_rope_parameters` / `_compute_yarn_parameters` (docs/olmo3.md §3.8).
RopeTable MakeRopeTable(const RopeConfig& rope, int64_t head_dim);

// Rotate-half (NeoX) RoPE in place on [num_tokens, num_heads, head_dim] rows:
// y[j] = A(x[j] cos θ - x[j+h] sin θ), y[j+h] = A(x[j+h] cos θ + x[j] sin θ), θ =
// f32(p)·inv_freq[j].
struct RopeParams {
  float* x = nullptr;  // f32 [num_tokens, num_heads * head_dim] with row stride `stride`
  int64_t num_tokens = 0;
  int64_t num_heads = 0;
  int64_t head_dim = 0;
  int64_t stride = 0;
  const int32_t* positions = nullptr;  // i32 [num_tokens]
  const RopeTable* table = nullptr;
};

// Paged KV cache of one layer: [num_blocks][2 (k, v)][kv_heads][block_size][head_dim] elements of
// `dtype`: f32, or bf16 (half the bytes; KvWrite rounds to nearest even, Attention widens exactly
// to f32, so attention over a bf16 cache equals attention over an f32 cache of the rounded values).
struct KvLayerView {
  void* data = nullptr;
  int64_t num_blocks = 0;
  int64_t kv_heads = 0;
  int64_t block_size = 0;  // tokens per block
  int64_t head_dim = 0;
  DType dtype = DType::kF32;  // kF32 or kBF16
};

// Writes k and v rows into cache slots. slot = block_id * block_size + offset.
struct KvWriteParams {
  const float* k = nullptr;  // f32 [num_tokens, kv_heads * head_dim], row stride k_stride
  const float* v = nullptr;  // f32 [num_tokens, kv_heads * head_dim], row stride v_stride
  int64_t k_stride = 0;
  int64_t v_stride = 0;
  int64_t num_tokens = 0;
  const int64_t* slots = nullptr;  // i64 [num_tokens]
  KvLayerView cache;
};

// Causal attention of each query token over the keys of its sequence in the paged cache.
// Token t (sequence s = token_seq[t], position p = positions[t]) attends to key positions
// u in [lo, p], lo = window > 0 ? max(0, p - window + 1) : 0; key position u is stored at
// block block_tables[s * max_blocks + u / block_size], offset u % block_size. All those keys
// must already be written. Query head h reads kv head h / (num_heads / kv_heads).
// Softmax in f32 with scale `scale`; out = Σ prob · v.
struct AttentionParams {
  const float* q = nullptr;  // f32 [num_tokens, num_heads * head_dim], row stride q_stride
  int64_t q_stride = 0;
  float* out = nullptr;  // f32 [num_tokens, num_heads * head_dim] (dense)
  int64_t num_tokens = 0;
  int64_t num_heads = 0;
  const int32_t* positions = nullptr;     // i32 [num_tokens]
  const int32_t* token_seq = nullptr;     // i32 [num_tokens], index into block_tables rows
  const int32_t* block_tables = nullptr;  // i32 [num_seqs, max_blocks]
  int64_t max_blocks = 0;
  int64_t window = 0;  // 0 = full causal; W = sliding window of W keys including the current
  float scale = 1.0f;
  KvLayerView cache;
};

// out[r, j] = silu(gate_up[r, j]) * gate_up[r, dim + j].
struct SwiGluParams {
  const float* gate_up = nullptr;  // f32 [rows, 2 * dim]: gate then up
  float* out = nullptr;            // f32 [rows, dim]
  int64_t rows = 0;
  int64_t dim = 0;
};

// out[r, :] = x[r, :] - logsumexp(x[r, :]) (f32, max-subtracted). out may alias x.
struct LogSoftmaxParams {
  const float* x = nullptr;  // f32 [rows, n]
  float* out = nullptr;      // f32 [rows, n]
  int64_t rows = 0;
  int64_t n = 0;
};

// Per-row parameters of Sample: plain data, the same bytes on host and device.
struct SampleRowParams {
  float temperature = 1.0f;         // 0: greedy (argmax after penalties and the ban)
  int32_t top_k = 0;                // on when 0 < top_k < vocab
  float top_p = 1.0f;               // on when < 1
  float min_p = 0.0f;               // on when > 0
  float repetition_penalty = 1.0f;  // on when != 1 (HF, over prompt + output ids)
  float presence_penalty = 0.0f;    // OpenAI, over output ids
  float frequency_penalty = 0.0f;   // OpenAI, over output counts
  int32_t num_logprobs = 0;         // top raw logprobs wanted (clamped to max_logprobs, vocab)
  uint64_t seed = 0;                // Philox key
  int64_t position = 0;             // Philox counter: absolute position of the token drawn
  int32_t ban_stop_ids = 0;         // nonzero: the row's ban_ids get -inf (min_tokens not reached)
  int32_t reserved = 0;             // explicit padding (no indeterminate bytes)
};
static_assert(sizeof(SampleRowParams) == 56, "SampleRowParams is copied to devices as bytes");

// Token sampling (DESIGN.md §5), row by row, over full vocab rows:
//   lse = log Σ exp(logits) (raw; every reported logprob is logit - lse);
//   z = logits; for each penalty id: z = z < 0 ? z * r : z / r (repetition, r != 1), then
//     z -= presence + frequency * count when count > 0 (f32, product and sum rounded
//     separately, never fused); then z[id] = -inf for every ban id when ban_stop_ids;
//   temperature 0: token = argmax z, lowest id on ties;
//   else z /= temperature (f32 division); top-k keeps z >= the k-th largest z (ties kept); the
//     survivors with z > -inf are ordered by (z desc, id asc) with probabilities
//     exp(z - z_max) / Σ (double); top-p drops the tail whose cumulative mass (summed from the
//     end) is <= 1 - top_p, keeping at least one; min-p drops the tail with probability
//     < min_p × the largest (renormalized over what top-p kept); u = PhiloxUniform(seed,
//     position, 0) × Σ exp(z - z_max) over the final set; token = the first survivor whose
//     running sum exceeds u (the last if none). No survivor at all: token = raw argmax.
// Outputs per row: token_ids, logprobs (raw, of the token) and the n = min(num_logprobs,
// max_logprobs, vocab) best raw logprobs by (raw logit desc, id asc) in top_ids/top_logprobs;
// entries [n, max_logprobs) get id -1 and logprob -inf. Every parameter value is supported on
// every backend. Logits may be -inf, never NaN. Rows are independent (batch invariant).
// CUDA sums the double probabilities in another order than the CPU: its tokens equal the CPU's
// except when u or a top-p/min-p cut lies within double rounding error of a boundary.
struct SampleParams {
  const float* logits = nullptr;  // f32 [rows, vocab], raw; not modified
  int64_t rows = 0;
  int64_t vocab = 0;                            // < 2^31
  const SampleRowParams* row_params = nullptr;  // [rows]
  // Penalty lists in CSR form: row r owns entries [penalty_offsets[r], penalty_offsets[r + 1]).
  // Null offsets: no penalty list for any row.
  const int32_t* penalty_offsets = nullptr;  // i32 [rows + 1]
  // i32 [penalty_offsets[rows]]: ids seen in the prompt or output, unique within a row; ids
  // outside [0, vocab) are ignored.
  const int32_t* penalty_ids = nullptr;
  const int32_t* penalty_counts = nullptr;  // i32 [penalty_offsets[rows]]: output occurrences
  // Stop ids banned while min_tokens is not reached (when the row's ban_stop_ids is set), CSR as
  // above; duplicates and ids outside [0, vocab) are allowed (ignored). Null offsets: none.
  const int32_t* ban_offsets = nullptr;  // i32 [rows + 1]
  const int32_t* ban_ids = nullptr;      // i32 [ban_offsets[rows]]
  int64_t max_logprobs = 0;              // row stride of top_ids / top_logprobs
  int32_t* token_ids = nullptr;          // i32 [rows]
  float* logprobs = nullptr;             // f32 [rows]: raw log-softmax of token_ids
  int32_t* top_ids = nullptr;            // i32 [rows, max_logprobs] (null when max_logprobs 0)
  float* top_logprobs = nullptr;         // f32 [rows, max_logprobs] (null when max_logprobs 0)
};

// Sample's partial reductions over one vocab slice (DESIGN.md §5, vocab-parallel sampling): a TP
// rank holding logit columns [vocab_begin, vocab_begin + vocab) of each row reports what the
// ranks' reports, merged on the host (worker/sampler/vocab_parallel.h), need to give Sample's
// result for greedy and small top-k rows without gathering the logits. Per row, over the slice
// (every id global, i.e. slice index + vocab_begin):
//   max (raw), argmax (lowest id on ties) and sum_exp = Σ exp(x - max), x - max rounded to f32 and
//     exp and Σ in double, as Sample does (0 when max is -inf): the raw log-sum-exp's parts;
//   top_ids / top_raw: the n = min(num_logprobs, max_logprobs, vocab) best raw logits by
//     (x desc, id asc); entries [n, max_logprobs) get id -1 and -inf;
//   z: Sample's processed logits (penalties and ban as in Sample, for the listed ids inside the
//     slice; then z / temperature unless temperature is 0);
//   cand_ids / cand_z / cand_raw: the min(max_candidates, vocab) best z by (z desc, id asc), -inf
//     included, with their raw logits; entries up to max_candidates get id -1, z and raw -inf.
// The f32 arithmetic is Sample's, operation for operation, so a candidate's z equals the z that
// Sample computes for that id over the full row, bit for bit.
struct SampleSliceParams {
  const float* logits = nullptr;  // f32 [rows, vocab]: the slice's columns, raw
  int64_t rows = 0;
  int64_t vocab = 0;                            // slice width, < 2^31
  int64_t vocab_begin = 0;                      // global id of column 0
  const SampleRowParams* row_params = nullptr;  // [rows]
  // Penalty and ban lists as in SampleParams, with global ids (those outside the slice ignored).
  const int32_t* penalty_offsets = nullptr;  // i32 [rows + 1] or null
  const int32_t* penalty_ids = nullptr;
  const int32_t* penalty_counts = nullptr;
  const int32_t* ban_offsets = nullptr;  // i32 [rows + 1] or null
  const int32_t* ban_ids = nullptr;
  int64_t max_logprobs = 0;     // row stride of top_ids / top_raw
  int64_t max_candidates = 1;   // >= 1, row stride of cand_*
  float* max = nullptr;         // f32 [rows]
  int32_t* argmax = nullptr;    // i32 [rows]
  double* sum_exp = nullptr;    // f64 [rows]
  int32_t* top_ids = nullptr;   // i32 [rows, max_logprobs] (null when max_logprobs 0)
  float* top_raw = nullptr;     // f32 [rows, max_logprobs] (null when max_logprobs 0)
  int32_t* cand_ids = nullptr;  // i32 [rows, max_candidates]
  float* cand_z = nullptr;      // f32 [rows, max_candidates]
  float* cand_raw = nullptr;    // f32 [rows, max_candidates]
};

class Ops {
 public:
  virtual ~Ops() = default;

  // Packs weights for Matmul: parts are stacked along rows (all parts share cols), so one Matmul
  // computes e.g. q, k and v together. The views' memory may be released afterwards.
  virtual absl::StatusOr<std::unique_ptr<PackedWeight>> PackWeight(
      std::span<const WeightView> parts) = 0;
  virtual void Matmul(const MatmulParams& p) = 0;
  virtual void Embedding(const EmbeddingParams& p) = 0;
  virtual void RmsNorm(const RmsNormParams& p) = 0;
  virtual void SumSquares(const SumSquaresParams& p) = 0;
  virtual void RmsScale(const RmsScaleParams& p) = 0;
  virtual void Rope(const RopeParams& p) = 0;
  virtual void KvWrite(const KvWriteParams& p) = 0;
  virtual void Attention(const AttentionParams& p) = 0;
  virtual void SwiGlu(const SwiGluParams& p) = 0;
  virtual void LogSoftmax(const LogSoftmaxParams& p) = 0;
  // Every pointer in p is backend memory; enqueued without a host sync on CUDA.
  virtual void Sample(const SampleParams& p) = 0;
  // Every pointer in p is backend memory; enqueued without a host sync on CUDA.
  virtual void SampleSlice(const SampleSliceParams& p) = 0;

  // Memory the ops' tensors live in: host memory on the CPU backend (these defaults), device
  // memory on CUDA. Copy moves bytes between any two of host and backend memory (stream-ordered
  // on CUDA: the host must Synchronize before reading what a Copy wrote to host memory); Zero
  // clears backend memory. Alloc returns null when out of memory.
  virtual bool on_device() const { return false; }
  virtual void* Alloc(int64_t bytes) {
    return std::aligned_alloc(64, static_cast<size_t>((bytes + 63) / 64 * 64));
  }
  virtual void Free(void* p) { std::free(p); }
  virtual void Copy(void* dst, const void* src, int64_t bytes) {
    std::memcpy(dst, src, static_cast<size_t>(bytes));
  }
  virtual void Zero(void* p, int64_t bytes) { std::memset(p, 0, static_cast<size_t>(bytes)); }
  // `rows` rows of `width` bytes from src (row pitch src_pitch bytes) to dst (row pitch
  // dst_pitch bytes), between any two of host and backend memory, ordered like Copy.
  virtual void Copy2D(void* dst, int64_t dst_pitch, const void* src, int64_t src_pitch,
                      int64_t width, int64_t rows) {
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(static_cast<char*>(dst) + r * dst_pitch,
                  static_cast<const char*>(src) + r * src_pitch, static_cast<size_t>(width));
    }
  }
  // Waits for the work queued on the backend, and returns the first error an op or copy met
  // since the previous Synchronize (CUDA: launch and copy errors, a failed workspace allocation,
  // an unsupported shape, a kernel fault). Ops return void so that they can be enqueued and
  // captured without a host round trip; this is where their failures surface, so the step that
  // contained them fails instead of returning stale outputs. The CPU backend has none.
  [[nodiscard]] virtual absl::Status Synchronize() { return absl::OkStatus(); }
  // Free backend memory in bytes (cudaMemGetInfo on CUDA); 0 when unknown (host memory).
  virtual int64_t free_memory_bytes() { return 0; }

  // Graphs (CUDA graphs, for decode steps). Between BeginCapture and EndCapture the ops and the
  // backend-to-backend Copy/Copy2D/Zero calls are recorded, not run; nothing else may be called
  // (no host copies, no Synchronize, no allocation). BeginCapture returns false when capture
  // could not start (then nothing is being recorded: do not run the work meant for it, nor call
  // EndCapture). EndCapture returns a handle, or -1 when the capture failed or an op reported an
  // error while recording (the recorded work is dropped, and so are those errors: run the work
  // uncaptured, and it reports them again). LaunchGraph runs a recorded graph again: the same ops
  // on the same pointers, reading their current contents. DropGraphs frees every graph (after a
  // buffer they use was reallocated). The CPU backend has none.
  virtual bool supports_graphs() const { return false; }
  virtual bool BeginCapture() { return false; }
  virtual int64_t EndCapture() { return -1; }
  virtual void LaunchGraph(int64_t handle) { (void)handle; }
  // Counts the reallocations of the backend's own workspaces that its ops use (CUDA: the
  // attention split-K partials, the GEMM's low-precision input copy). A graph captured before a
  // change of this value may read freed memory: drop it.
  virtual int64_t workspace_epoch() const { return 0; }
  virtual void DropGraphs() {}
};

// A typed buffer in an Ops backend's memory (host on CPU, device on CUDA). Resize keeps no
// contents (every user rewrites its workspace each step); capacity only grows.
template <typename T>
class OpsBuffer {
 public:
  OpsBuffer() = default;
  explicit OpsBuffer(Ops* ops) : ops_(ops) {}
  OpsBuffer(const OpsBuffer&) = delete;
  OpsBuffer& operator=(const OpsBuffer&) = delete;
  OpsBuffer(OpsBuffer&& o) noexcept { *this = std::move(o); }
  OpsBuffer& operator=(OpsBuffer&& o) noexcept {
    std::swap(ops_, o.ops_);
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(capacity_, o.capacity_);
    return *this;
  }
  ~OpsBuffer() {
    if (data_ != nullptr) ops_->Free(data_);
  }
  void set_ops(Ops* ops) { ops_ = ops; }
  // False when the backend is out of memory.
  bool resize(size_t n) {
    if (n > capacity_) {
      if (data_ != nullptr) ops_->Free(data_);
      data_ = static_cast<T*>(ops_->Alloc(static_cast<int64_t>(n * sizeof(T))));
      capacity_ = data_ != nullptr ? n : 0;
      if (data_ == nullptr) {
        size_ = 0;
        return false;
      }
    }
    size_ = n;
    return true;
  }
  // Copies n host elements in.
  bool Upload(const T* host, size_t n) {
    if (!resize(n)) return false;
    ops_->Copy(data_, host, static_cast<int64_t>(n * sizeof(T)));
    return true;
  }
  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }

 private:
  Ops* ops_ = nullptr;
  T* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

enum class MatmulPath : uint8_t {
  kPacked,  // AVX2 kernel over packed weight panels, batch-invariant (default)
  kBlas,    // f32-converted panels + OpenBLAS cblas_sgemm (fast prefill, not batch-invariant)
};

struct CpuOpsOptions {
  int num_threads = 0;  // 0 -> hardware cores / local ranks (at least 1)
  MatmulPath matmul_path = MatmulPath::kPacked;
};

std::unique_ptr<Ops> MakeCpuOps(const CpuOpsOptions& options);

}  // namespace olmo::kernels
