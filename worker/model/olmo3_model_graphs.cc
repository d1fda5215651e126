// Olmo3Model's CUDA-graph path for decode steps (contract in olmo3_model.h, ModelOptions::graphs):
// which steps are graphable, their table widths, when graphs go stale, and how the TP ranks agree
// on capturing and launching them.
#include <algorithm>
#include <bit>
#include <string>

#include "common/status_macros.h"
#include "spdlog/spdlog.h"
#include "worker/model/olmo3_model.h"

namespace olmo::model {

int64_t GraphTableWidth(int64_t max_blocks) {
  if (max_blocks <= 4) return max_blocks;
  const int64_t quantum = std::bit_floor(static_cast<uint64_t>(max_blocks)) / 4;
  return (max_blocks + quantum - 1) / quantum * quantum;
}

// A decode step (one token per sequence, every token's logits wanted) on a backend with graphs,
// whose collectives are stream-ordered (none, or a device Comm).
bool Olmo3Model::Graphable(const ForwardBatch& b) const {
  if (!use_graphs_ || !ops_->supports_graphs()) return false;
  if (tp_ > 1 && tpc_->memory_space() != comm::MemorySpace::kDevice) return false;
  const int64_t T = b.num_tokens();
  if (static_cast<int64_t>(b.logit_rows.size()) != T) return false;
  for (int64_t t = 0; t < T; ++t) {
    if (b.token_seq[t] != t || b.logit_rows[t] != t) return false;
  }
  return true;
}

Olmo3Model::GraphMemory Olmo3Model::CurrentGraphMemory() const {
  GraphMemory m;
  std::vector<const void*>& a = m.addresses;
  for (const auto* buf : {&x_, &qkv_, &attn_, &proj_, &gate_up_, &act_, &sum_sq_, &final_x_,
                          &padded_dev_, &gathered_dev_, &logits_dev_}) {
    a.push_back(buf->data());
  }
  a.push_back(ids_dev_.data());
  a.push_back(positions_dev_.data());
  a.push_back(token_seq_dev_.data());
  for (int g = 0; g < kNumKvGroups; ++g) {
    a.push_back(tables_dev_[g].data());
    a.push_back(slots_dev_[g].data());
  }
  m.workspace_epoch = ops_->workspace_epoch();
  return m;
}

void Olmo3Model::DropAllGraphs() {
  ops_->DropGraphs();
  graphs_.clear();
}

void Olmo3Model::DropStaleGraphs() {
  GraphMemory now = CurrentGraphMemory();
  if (now == graph_memory_) return;
  DropAllGraphs();
  graph_memory_ = std::move(now);
}

void Olmo3Model::DisableGraphs(const std::string& why) {
  spdlog::warn("decode-step graphs off: {}", why);
  use_graphs_ = false;
  DropAllGraphs();
}

absl::StatusOr<int32_t> Olmo3Model::AgreeMin(int32_t value) {
  if (tp_ == 1) return value;
  std::vector<int32_t> all(static_cast<size_t>(tp_));
  OLMO_RETURN_IF_ERROR(host_tpc_->AllGather(&value, sizeof(value), all.data()));
  return *std::min_element(all.begin(), all.end());
}

// The layers (and the last stage's logits: gathered into logits_dev_, or the local slice in
// proj_ when !gather) of a Graphable step, after Prepare:
// the first step of a shape runs plainly (it sizes every workspace), the second is captured and
// launched, later ones launch. A reallocated buffer or backend workspace drops every graph; a
// failed capture turns graphs off for this model.
// At tp > 1 the graph holds NCCL calls, and whether a collective is captured or launched from a
// graph must be the same on every rank: the ranks agree on the step's mode (the least of their
// wishes: run plainly < capture < launch) and on a capture's success, over the host Comm. So a
// rank whose graphs went stale, or whose capture failed, takes the others along. A capture that
// cannot even begin on one rank at tp > 1 fails the step: the others recorded NCCL calls it did
// not.
absl::Status Olmo3Model::RunGraphed(const ForwardBatch& b, kv::KvCache* cache, bool gather) {
  auto body = [&]() -> absl::Status {
    OLMO_RETURN_IF_ERROR(RunLayers(b, cache));
    if (!is_last_stage()) return absl::OkStatus();
    return gather ? Logits(b, nullptr) : LocalLogits(b, nullptr);
  };
  enum Mode : int32_t { kPlain = 0, kCapture = 1, kLaunch = 2 };
  const std::array<int64_t, 4> key = {b.num_tokens(), inputs_.table_width[0],
                                      inputs_.table_width[1], gather ? 1 : 0};
  DropStaleGraphs();
  if (graphs_.size() >= kMaxGraphs) DropAllGraphs();  // many shapes: start over, not grow
  auto it = graphs_.find(key);
  const int32_t want = it == graphs_.end() ? kPlain : it->second < 0 ? kCapture : kLaunch;
  OLMO_ASSIGN_OR_RETURN(const int32_t mode, AgreeMin(want));
  if (mode == kPlain) {
    OLMO_RETURN_IF_ERROR(body());
    DropStaleGraphs();  // the step may have grown a workspace
    graphs_[key] = -1;  // captured the next time, on every rank
    return absl::OkStatus();
  }
  int64_t& handle = graphs_[key];
  if (mode == kCapture) {
    // (A rank that had a graph for this key captures anew with the others.)
    if (!ops_->BeginCapture()) {
      if (tp_ > 1) {
        // The other ranks are recording this step's NCCL calls now; NCCL requires every rank to
        // capture them. Nothing consistent remains: fail the step (the group ends).
        return absl::InternalError("could not begin a CUDA graph capture (see the backend's log)");
      }
      DisableGraphs("a capture could not begin");
      return body();
    }
    const absl::Status st = body();
    const int64_t captured = ops_->EndCapture();
    const bool ok = captured >= 0 && st.ok() && CurrentGraphMemory() == graph_memory_;
    OLMO_ASSIGN_OR_RETURN(const int32_t all_ok, AgreeMin(ok ? 1 : 0));
    if (all_ok == 0) {
      DisableGraphs(!st.ok() ? "capture failed: " + st.ToString()
                    : ok     ? "capture failed on another TP rank"
                             : "capture failed (see the backend's log)");
      return body();
    }
    handle = captured;
  }
  ops_->LaunchGraph(handle);
  ++graph_launches_;
  return absl::OkStatus();
}

}  // namespace olmo::model
