#include "proto/plan_proto.h"

#include "absl/strings/str_format.h"

namespace olmo::server {

void ToProto(const StepPlan& plan, v1::StepPlan* out) {
  out->Clear();
  out->set_step_id(plan.step_id);
  for (int64_t id : plan.free_seq_ids) out->add_free_seq_ids(id);
  for (const SeqStep& s : plan.seqs) {
    v1::SeqStep* m = out->add_seqs();
    m->set_seq_id(s.seq_id);
    m->set_epoch(s.epoch);
    m->mutable_token_ids()->Add(s.token_ids.begin(), s.token_ids.end());
    m->set_start_pos(s.start_pos);
    m->set_sample(s.sample);
    for (const BlockTableDelta& d : s.blocks) {
      v1::BlockTableDelta* b = m->add_blocks();
      b->set_reset(d.reset);
      b->mutable_append()->Add(d.append.begin(), d.append.end());
    }
    if (s.sampling.has_value()) {
      const SamplingParams& p = *s.sampling;
      v1::StepSampling* q = m->mutable_sampling();
      q->set_temperature(p.temperature);
      q->set_top_k(p.top_k);
      q->set_top_p(p.top_p);
      q->set_min_p(p.min_p);
      q->set_repetition_penalty(p.repetition_penalty);
      q->set_presence_penalty(p.presence_penalty);
      q->set_frequency_penalty(p.frequency_penalty);
      q->set_min_tokens(p.min_tokens);
      q->set_seed(p.seed);
      q->set_logprobs(p.logprobs);
      q->mutable_stop_token_ids()->Add(p.stop_token_ids.begin(), p.stop_token_ids.end());
      m->set_num_prompt_tokens(s.num_prompt_tokens);
    }
  }
}

absl::StatusOr<StepPlan> FromProto(const v1::StepPlan& msg) {
  StepPlan plan;
  plan.step_id = msg.step_id();
  plan.free_seq_ids.assign(msg.free_seq_ids().begin(), msg.free_seq_ids().end());
  for (const v1::SeqStep& m : msg.seqs()) {
    if (m.blocks_size() != kNumKvGroups) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "step %d, sequence %d: %d block-table deltas, expected %d", msg.step_id(), m.seq_id(),
          m.blocks_size(), kNumKvGroups));
    }
    SeqStep s;
    s.seq_id = m.seq_id();
    s.epoch = m.epoch();
    s.token_ids.assign(m.token_ids().begin(), m.token_ids().end());
    s.start_pos = m.start_pos();
    s.sample = m.sample();
    for (int g = 0; g < kNumKvGroups; ++g) {
      s.blocks[g].reset = m.blocks(g).reset();
      s.blocks[g].append.assign(m.blocks(g).append().begin(), m.blocks(g).append().end());
    }
    if (m.has_sampling()) {
      const v1::StepSampling& q = m.sampling();
      SamplingParams p;
      p.temperature = q.temperature();
      p.top_k = q.top_k();
      p.top_p = q.top_p();
      p.min_p = q.min_p();
      p.repetition_penalty = q.repetition_penalty();
      p.presence_penalty = q.presence_penalty();
      p.frequency_penalty = q.frequency_penalty();
      p.min_tokens = q.min_tokens();
      p.seed = q.seed();
      p.logprobs = q.logprobs();
      p.stop_token_ids.assign(q.stop_token_ids().begin(), q.stop_token_ids().end());
      s.sampling = std::move(p);
      s.num_prompt_tokens = m.num_prompt_tokens();
    }
    plan.seqs.push_back(std::move(s));
  }
  return plan;
}

void ToProto(const StepResult& result, v1::StepResult* out) {
  out->Clear();
  out->set_step_id(result.step_id);
  out->set_status_code(static_cast<int32_t>(result.status.code()));
  out->set_status_message(std::string(result.status.message()));
  out->set_step_seconds(result.step_seconds);
  for (const SeqResult& s : result.seqs) {
    v1::SeqResult* m = out->add_seqs();
    m->set_seq_id(s.seq_id);
    m->set_epoch(s.epoch);
    m->set_token_id(s.token_id);
    m->set_logprob(s.logprob);
    for (const TokenLogprob& t : s.top_logprobs) {
      m->add_top_ids(t.id);
      m->add_top_logprobs(t.logprob);
    }
  }
}

absl::StatusOr<StepResult> FromProto(const v1::StepResult& msg) {
  if (msg.status_code() < 0 || msg.status_code() > 16) {
    return absl::InvalidArgumentError(absl::StrFormat("step %d: invalid status code %d",
                                                      msg.step_id(), msg.status_code()));
  }
  StepResult r;
  r.step_id = msg.step_id();
  r.status = absl::Status(static_cast<absl::StatusCode>(msg.status_code()), msg.status_message());
  r.step_seconds = msg.step_seconds();
  for (const v1::SeqResult& m : msg.seqs()) {
    if (m.top_ids_size() != m.top_logprobs_size()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "step %d, sequence %d: %d top ids but %d top logprobs", msg.step_id(), m.seq_id(),
          m.top_ids_size(), m.top_logprobs_size()));
    }
    SeqResult s;
    s.seq_id = m.seq_id();
    s.epoch = m.epoch();
    s.token_id = m.token_id();
    s.logprob = m.logprob();
    for (int i = 0; i < m.top_ids_size(); ++i) s.top_logprobs.push_back({m.top_ids(i), m.top_logprobs(i)});
    r.seqs.push_back(std::move(s));
  }
  return r;
}

}  // namespace olmo::server
