#include "worker/step/device_sampler.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/sampler/vocab_parallel.h"

namespace olmo::step {

DeviceSampler::DeviceSampler(kernels::Ops* ops) : ops_(ops) {
  rows_.set_ops(ops);
  for (auto* b : {&penalty_offsets_, &penalty_ids_, &penalty_counts_, &ban_offsets_, &ban_ids_,
                  &token_ids_, &top_ids_}) {
    b->set_ops(ops);
  }
  logprobs_.set_ops(ops);
  top_logprobs_.set_ops(ops);
  report_.set_ops(ops);
  gathered_.set_ops(ops);
}

bool DeviceSampler::UploadBatch(const sampler::SampleBatch& batch) {
  // OpsBuffer::Upload of an empty list allocates nothing; the ops read no entry of it then.
  auto upload = [](kernels::OpsBuffer<int32_t>& b, const std::vector<int32_t>& v) {
    return v.empty() || b.Upload(v.data(), v.size());
  };
  return rows_.Upload(batch.rows.data(), batch.rows.size()) &&
         upload(penalty_offsets_, batch.penalty_offsets) &&
         upload(penalty_ids_, batch.penalty_ids) && upload(penalty_counts_, batch.penalty_counts) &&
         upload(ban_offsets_, batch.ban_offsets) && upload(ban_ids_, batch.ban_ids);
}

template <typename Params>
void DeviceSampler::BindBatch(const sampler::SampleBatch& batch, Params* p) {
  p->rows = batch.size();
  p->row_params = rows_.data();
  p->penalty_offsets = penalty_offsets_.data();
  p->penalty_ids = batch.penalty_ids.empty() ? nullptr : penalty_ids_.data();
  p->penalty_counts = batch.penalty_counts.empty() ? nullptr : penalty_counts_.data();
  p->ban_offsets = ban_offsets_.data();
  p->ban_ids = batch.ban_ids.empty() ? nullptr : ban_ids_.data();
}

absl::StatusOr<std::vector<std::optional<sampler::SampleOutput>>> DeviceSampler::SampleSlices(
    const float* slice, int64_t vocab_begin, int64_t vocab_local, int64_t vocab, comm::Comm* tp,
    const sampler::SampleBatch& batch) {
  const int64_t n = batch.size();
  std::vector<std::optional<sampler::SampleOutput>> out(static_cast<size_t>(n));
  int64_t candidates = 0;
  for (const kernels::SampleRowParams& row : batch.rows) {
    candidates = std::max(candidates, sampler::SliceCandidates(row, vocab));
  }
  if (n == 0 || candidates == 0) return out;  // every row needs its full logits (on every rank)
  const sampler::SliceReportLayout layout =
      sampler::SliceReportLayout::For(n, batch.max_logprobs, candidates);
  const size_t words = static_cast<size_t>(layout.bytes / 8);
  if (!UploadBatch(batch) || !report_.resize(words)) {
    return absl::ResourceExhaustedError("out of backend memory for sampling");
  }
  kernels::SampleSliceParams p;
  p.logits = slice;
  p.vocab = vocab_local;
  p.vocab_begin = vocab_begin;
  BindBatch(batch, &p);
  layout.Bind(report_.data(), &p);
  ops_->SampleSlice(p);

  const int size = tp->size();
  gathered_host_.resize(words * static_cast<size_t>(size));
  if (tp->memory_space() == comm::MemorySpace::kDevice) {
    if (!gathered_.resize(words * static_cast<size_t>(size))) {
      return absl::ResourceExhaustedError("out of backend memory for sampling");
    }
    OLMO_RETURN_IF_ERROR(tp->AllGather(report_.data(), layout.bytes, gathered_.data()));
    ops_->Copy(gathered_host_.data(), gathered_.data(), layout.bytes * size);
    OLMO_RETURN_IF_ERROR(ops_->Synchronize());
  } else {
    const void* send = report_.data();
    if (ops_->on_device()) {
      report_host_.resize(words);
      ops_->Copy(report_host_.data(), report_.data(), layout.bytes);
      send = report_host_.data();
    }
    OLMO_RETURN_IF_ERROR(ops_->Synchronize());
    OLMO_RETURN_IF_ERROR(tp->AllGather(send, layout.bytes, gathered_host_.data()));
  }
  std::vector<sampler::SliceReport> reports;
  for (int r = 0; r < size; ++r) {
    reports.emplace_back(layout, gathered_host_.data() + r * words);
    OLMO_RETURN_IF_ERROR(sampler::CheckSliceReport(reports.back(), vocab));
  }
  for (int64_t i = 0; i < n; ++i) {
    out[static_cast<size_t>(i)] = sampler::MergeSliceReports(reports, i, batch.rows[i], vocab);
  }
  return out;
}

absl::StatusOr<std::vector<sampler::SampleOutput>> DeviceSampler::Sample(
    const float* logits, int64_t vocab, const sampler::SampleBatch& batch) {
  const int64_t n = batch.size();
  std::vector<sampler::SampleOutput> out(static_cast<size_t>(n));
  if (n == 0) return out;
  const int64_t k = batch.max_logprobs;
  bool ok = UploadBatch(batch) && token_ids_.resize(static_cast<size_t>(n)) &&
            logprobs_.resize(static_cast<size_t>(n)) &&
            (k == 0 || (top_ids_.resize(static_cast<size_t>(n * k)) &&
                        top_logprobs_.resize(static_cast<size_t>(n * k))));
  if (!ok) return absl::ResourceExhaustedError("out of backend memory for sampling");
  kernels::SampleParams p;
  p.logits = logits;
  p.vocab = vocab;
  BindBatch(batch, &p);
  p.max_logprobs = k;
  p.token_ids = token_ids_.data();
  p.logprobs = logprobs_.data();
  p.top_ids = k > 0 ? top_ids_.data() : nullptr;
  p.top_logprobs = k > 0 ? top_logprobs_.data() : nullptr;
  ops_->Sample(p);

  std::vector<int32_t> ids(static_cast<size_t>(n)), top_ids(static_cast<size_t>(n * k));
  std::vector<float> logprobs(static_cast<size_t>(n)), top_logprobs(static_cast<size_t>(n * k));
  ops_->Copy(ids.data(), token_ids_.data(), n * static_cast<int64_t>(sizeof(int32_t)));
  ops_->Copy(logprobs.data(), logprobs_.data(), n * static_cast<int64_t>(sizeof(float)));
  if (k > 0) {
    ops_->Copy(top_ids.data(), top_ids_.data(), n * k * static_cast<int64_t>(sizeof(int32_t)));
    ops_->Copy(top_logprobs.data(), top_logprobs_.data(),
               n * k * static_cast<int64_t>(sizeof(float)));
  }
  OLMO_RETURN_IF_ERROR(ops_->Synchronize());
  for (int64_t r = 0; r < n; ++r) {
    sampler::SampleOutput& o = out[static_cast<size_t>(r)];
    o.token_id = ids[r];
    o.logprob = logprobs[r];
    if (o.token_id < 0 || o.token_id >= vocab) {
      return absl::InternalError(absl::StrFormat(
          "the Sample op returned token id %d for row %d (vocab %d)", o.token_id, r, vocab));
    }
    const int64_t want = std::min<int64_t>(batch.rows[r].num_logprobs, std::min(k, vocab));
    for (int64_t i = 0; i < want; ++i) {
      o.top_logprobs.push_back({top_ids[r * k + i], top_logprobs[r * k + i]});
    }
  }
  return out;
}

}  // namespace olmo::step
