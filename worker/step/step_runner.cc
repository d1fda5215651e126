#include "worker/step/step_runner.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_format.h"

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

  const bool on_device = last && device_sampler_ != nullptr && !b.logit_rows.empty();
  absl::Status status;
  const float* device_logits = nullptr;
  if (on_device) {
    absl::StatusOr<const float*> l = model_->ForwardStageToBackend(b, cache_.get(), hidden_in);
    status = l.status();
    if (l.ok()) device_logits = *l;
  } else {
    status = model_->ForwardStage(b, cache_.get(), hidden_in, last ? &logits_ : hidden_out);
  }
  if (!status.ok()) {
    result.status = status;
    return result;
  }
  ++steps_executed_;
  tokens_executed_ += b.num_tokens();
  if (!last) {
    result.step_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    busy_seconds_ += result.step_seconds;
    return result;
  }
  std::vector<sampler::SampleOutput> outs;
  if (on_device) {
    sampler::SampleBatch batch;
    for (const SeqStep& st : plan.seqs) {
      if (!st.sample) continue;
      batch.Add(*seqs_[st.seq_id].sampling,
                st.start_pos + static_cast<int64_t>(st.token_ids.size()));
    }
    absl::StatusOr<std::vector<sampler::SampleOutput>> sampled =
        device_sampler_->Sample(device_logits, vocab, batch);
    if (!sampled.ok()) {
      result.status = sampled.status();
      return result;
    }
    outs = std::move(*sampled);
  } else {
    size_t row = 0;
    for (const SeqStep& st : plan.seqs) {
      if (!st.sample) continue;
      const int64_t position = st.start_pos + static_cast<int64_t>(st.token_ids.size());
      outs.push_back(sampler::Sample(
          std::span<const float>(logits_.data() + row * vocab, static_cast<size_t>(vocab)),
          *seqs_[st.seq_id].sampling, position));
      ++row;
    }
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

}  // namespace olmo::step
