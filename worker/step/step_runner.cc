#include "worker/step/step_runner.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace olmo::step {

StepRunner::StepRunner(model::Olmo3Model* model, std::unique_ptr<kv::KvCache> cache,
                       kernels::Ops* device_sampling_ops)
    : model_(model), cache_(std::move(cache)) {
  if (device_sampling_ops != nullptr) {
    device_sampler_ = std::make_unique<DeviceSampler>(device_sampling_ops);
  }
  info_.num_blocks[kKvGroupFull] = cache_->shape().num_blocks[kKvGroupFull];
  info_.num_blocks[kKvGroupSliding] = cache_->shape().num_blocks[kKvGroupSliding];
  info_.block_size = cache_->shape().block_size;
  info_.vocab_size = model_->config().vocab_size;
}

absl::StatusOr<StepResult> StepRunner::Execute(const StepPlan& plan) {
  return ExecuteStage(plan, nullptr, nullptr);
}

absl::StatusOr<StepResult> StepRunner::ExecuteStage(const StepPlan& plan, const float* hidden_in,
                                                    std::vector<float>* hidden_out) {
  const bool last = model_->is_last_stage();
  if (!last && hidden_out == nullptr) {
    return absl::FailedPreconditionError("a non-last pipeline stage needs an output buffer");
  }
  auto t0 = std::chrono::steady_clock::now();
  StepResult result;
  result.step_id = plan.step_id;
  if (plan.step_id != next_step_id_) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "step %d received out of order (expected %d)", plan.step_id, next_step_id_));
  }
  ++next_step_id_;
  for (int64_t id : plan.free_seq_ids) seqs_.erase(id);

  const int64_t vocab = model_->config().vocab_size;
  const int64_t bs = cache_->shape().block_size;
  model::ForwardBatch b;
  // Apply block-table deltas and sampling state, then size the tables.
  for (const SeqStep& st : plan.seqs) {
    SeqState& s = seqs_[st.seq_id];
    if (st.sampling.has_value()) {
      s.admitted = true;
      // Only the last stage samples, so only it keeps sampling state and token counts.
      if (last) {
        s.sampling =
            std::make_unique<sampler::SequenceState>(*st.sampling, st.num_prompt_tokens, vocab);
      }
    }
    if (!s.admitted) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "step %d: sequence %d appears without sampling parameters", plan.step_id, st.seq_id));
    }
    s.epoch = st.epoch;
    for (int g = 0; g < kNumKvGroups; ++g) {
      if (st.blocks[g].reset) s.tables[g].clear();
      s.tables[g].insert(s.tables[g].end(), st.blocks[g].append.begin(), st.blocks[g].append.end());
      int64_t need = (st.start_pos + static_cast<int64_t>(st.token_ids.size()) + bs - 1) / bs;
      if (static_cast<int64_t>(s.tables[g].size()) < need) {
        return absl::FailedPreconditionError(
            absl::StrFormat("step %d: sequence %d has %d blocks in KV group %d, needs %d",
                            plan.step_id, st.seq_id, s.tables[g].size(), g, need));
      }
      b.max_blocks[g] =
          std::max<int64_t>(b.max_blocks[g], static_cast<int64_t>(s.tables[g].size()));
    }
  }
  const int64_t num_seqs = static_cast<int64_t>(plan.seqs.size());
  for (int g = 0; g < kNumKvGroups; ++g) {
    b.block_tables[g].assign(static_cast<size_t>(num_seqs * std::max<int64_t>(b.max_blocks[g], 1)),
                             0);
  }
  for (int64_t i = 0; i < num_seqs; ++i) {
    const SeqStep& st = plan.seqs[i];
    SeqState& s = seqs_[st.seq_id];
    for (int g = 0; g < kNumKvGroups; ++g) {
      std::copy(s.tables[g].begin(), s.tables[g].end(),
                b.block_tables[g].begin() + i * b.max_blocks[g]);
    }
    for (size_t j = 0; j < st.token_ids.size(); ++j) {
      int32_t pos = st.start_pos + static_cast<int32_t>(j);
      b.token_ids.push_back(st.token_ids[j]);
      b.positions.push_back(pos);
      b.token_seq.push_back(static_cast<int32_t>(i));
      for (int g = 0; g < kNumKvGroups; ++g) {
        b.slots[g].push_back(static_cast<int64_t>(s.tables[g][pos / bs]) * bs + pos % bs);
      }
    }
    if (st.sample) b.logit_rows.push_back(static_cast<int32_t>(b.token_ids.size() - 1));
    if (last) s.sampling->Observe(st.token_ids, st.start_pos);
  }

  std::vector<sampler::SampleOutput> outs;
  if (last) {
    absl::StatusOr<std::vector<sampler::SampleOutput>> sampled =
        SampleStep(plan, b, cache_.get(), hidden_in);
    if (!sampled.ok()) {
      result.status = sampled.status();
      return result;
    }
    outs = std::move(*sampled);
  } else {
    const absl::Status status = model_->ForwardStage(b, cache_.get(), hidden_in, hidden_out);
    if (!status.ok()) {
      result.status = status;
      return result;
    }
  }
  ++steps_executed_;
  tokens_executed_ += b.num_tokens();
  if (!last) {
    result.step_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    busy_seconds_ += result.step_seconds;
    return result;
  }
  size_t row = 0;
  for (const SeqStep& st : plan.seqs) {
    if (!st.sample) continue;
    sampler::SampleOutput& out = outs[row++];
    SeqResult r;
    r.seq_id = st.seq_id;
    r.epoch = st.epoch;
    r.token_id = out.token_id;
    r.logprob = out.logprob;
    r.top_logprobs = std::move(out.top_logprobs);
    result.seqs.push_back(std::move(r));
  }
  result.step_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  busy_seconds_ += result.step_seconds;
  return result;
}

absl::StatusOr<std::vector<sampler::SampleOutput>> StepRunner::SampleStep(
    const StepPlan& plan, const model::ForwardBatch& b, kv::KvCache* cache,
    const float* hidden_in) {
  const int64_t vocab = model_->config().vocab_size;
  // Row r of the step's logits is the r-th sampled sequence; it draws the token after its input.
  std::vector<const sampler::SequenceState*> states;
  std::vector<int64_t> positions;
  for (const SeqStep& st : plan.seqs) {
    if (!st.sample) continue;
    states.push_back(seqs_[st.seq_id].sampling.get());
    positions.push_back(st.start_pos + static_cast<int64_t>(st.token_ids.size()));
  }
  const int64_t rows = static_cast<int64_t>(states.size());
  auto batch_of = [&](const std::vector<int32_t>& picked) {
    sampler::SampleBatch batch;
    for (int32_t r : picked) batch.Add(*states[r], positions[r]);
    return batch;
  };
  // Rows `picked` from full logits rows f32 [picked.size(), vocab]: in backend memory with device
  // sampling, else in logits_ on the host.
  auto sample_full =
      [&](const std::vector<int32_t>& picked,
          const float* backend_logits) -> absl::StatusOr<std::vector<sampler::SampleOutput>> {
    if (device_sampler_ != nullptr) {
      return device_sampler_->Sample(backend_logits, vocab, batch_of(picked));
    }
    std::vector<sampler::SampleOutput> outs;
    for (size_t j = 0; j < picked.size(); ++j) {
      outs.push_back(sampler::Sample(
          std::span<const float>(logits_.data() + j * vocab, static_cast<size_t>(vocab)),
          *states[picked[j]], positions[picked[j]]));
    }
    return outs;
  };
  std::vector<int32_t> all(static_cast<size_t>(rows));
  std::iota(all.begin(), all.end(), 0);

  // Vocab-parallel where the slice reduction runs next to the logits: the CPU backend, or a device
  // backend sampling on the device (--sampling device; its kernels stay opt-in until a GPU run
  // has verified them). A device backend sampling on the host gathers every row.
  const bool vocab_parallel =
      vocab_parallel_ && (device_sampler_ != nullptr || !model_->ops()->on_device());
  if (rows == 0 || model_->tp() == 1 || !vocab_parallel) {
    const float* backend_logits = nullptr;
    if (device_sampler_ != nullptr && rows > 0) {
      OLMO_ASSIGN_OR_RETURN(backend_logits, model_->ForwardStageToBackend(b, cache, hidden_in));
    } else {
      OLMO_RETURN_IF_ERROR(model_->ForwardStage(b, cache, hidden_in, &logits_));
    }
    if (model_->tp() > 1) gathered_rows_ += rows;
    return sample_full(all, backend_logits);
  }

  // Vocab-parallel: reports from every rank's slice; full rows only for what they cannot finish.
  OLMO_ASSIGN_OR_RETURN(const float* slice, model_->ForwardStageLogitSlice(b, cache, hidden_in));
  DeviceSampler* slicer = device_sampler_.get();
  if (slicer == nullptr) {  // the CPU backend
    if (slice_sampler_ == nullptr) slice_sampler_ = std::make_unique<DeviceSampler>(model_->ops());
    slicer = slice_sampler_.get();
  }
  OLMO_ASSIGN_OR_RETURN(std::vector<std::optional<sampler::SampleOutput>> merged,
                        slicer->SampleSlices(slice, model_->vocab_begin(), model_->vocab_local(),
                                             vocab, model_->tp_comm(), batch_of(all)));
  std::vector<int32_t> full;
  for (int32_t r = 0; r < rows; ++r) {
    if (!merged[r].has_value()) full.push_back(r);
  }
  slice_sampled_rows_ += rows - static_cast<int64_t>(full.size());
  gathered_rows_ += static_cast<int64_t>(full.size());
  if (!full.empty()) {
    OLMO_ASSIGN_OR_RETURN(const float* gathered,
                          model_->GatherLogitRows(full, device_sampler_ ? nullptr : &logits_));
    OLMO_ASSIGN_OR_RETURN(std::vector<sampler::SampleOutput> outs, sample_full(full, gathered));
    for (size_t j = 0; j < full.size(); ++j) merged[full[j]] = std::move(outs[j]);
  }
  std::vector<sampler::SampleOutput> outs;
  for (auto& m : merged) outs.push_back(std::move(*m));
  return outs;
}

}  // namespace olmo::step
