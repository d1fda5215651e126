#include "common/plan_codec.h"

#include <cstring>
#include <type_traits>

#include "absl/strings/str_format.h"

namespace olmo {
namespace {

constexpr uint32_t kPlanMagic = 0x4f4c5031;    // "OLP1"
constexpr uint32_t kResultMagic = 0x4f4c5231;  // "OLR1"

class Writer {
 public:
  template <typename T>
  void Put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    out_.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  template <typename T>
  void PutVec(const std::vector<T>& v) {
    Put<uint32_t>(static_cast<uint32_t>(v.size()));
    out_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view b) : b_(b) {}
  template <typename T>
  bool Get(T* v) {
    if (b_.size() - pos_ < sizeof(T)) return false;
    std::memcpy(v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  template <typename T>
  bool GetVec(std::vector<T>* v) {
    uint32_t n;
    if (!Get(&n) || (b_.size() - pos_) / sizeof(T) < n) return false;
    v->resize(n);
    std::memcpy(v->data(), b_.data() + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
    return true;
  }
  bool done() const { return pos_ == b_.size(); }

 private:
  std::string_view b_;
  size_t pos_ = 0;
};

void PutSampling(Writer& w, const SamplingParams& s) {
  w.Put(s.temperature);
  w.Put(s.top_k);
  w.Put(s.top_p);
  w.Put(s.min_p);
  w.Put(s.repetition_penalty);
  w.Put(s.presence_penalty);
  w.Put(s.frequency_penalty);
  w.Put(s.min_tokens);
  w.Put(s.seed);
  w.Put(s.logprobs);
  w.PutVec(s.stop_token_ids);
}

bool GetSampling(Reader& r, SamplingParams* s) {
  return r.Get(&s->temperature) && r.Get(&s->top_k) && r.Get(&s->top_p) && r.Get(&s->min_p) &&
         r.Get(&s->repetition_penalty) && r.Get(&s->presence_penalty) &&
         r.Get(&s->frequency_penalty) && r.Get(&s->min_tokens) && r.Get(&s->seed) &&
         r.Get(&s->logprobs) && r.GetVec(&s->stop_token_ids);
}

absl::Status Truncated(const char* what) {
  return absl::DataLossError(absl::StrFormat("%s: truncated or corrupt encoding", what));
}

}  // namespace

std::string EncodePlan(const StepPlan& plan) {
  Writer w;
  w.Put(kPlanMagic);
  w.Put(plan.step_id);
  w.PutVec(plan.free_seq_ids);
  w.Put<uint32_t>(static_cast<uint32_t>(plan.seqs.size()));
  for (const SeqStep& s : plan.seqs) {
    w.Put(s.seq_id);
    w.Put(s.epoch);
    w.PutVec(s.token_ids);
    w.Put(s.start_pos);
    w.Put<uint8_t>(s.sample);
    for (const BlockTableDelta& d : s.blocks) {
      w.Put<uint8_t>(d.reset);
      w.PutVec(d.append);
    }
    w.Put<uint8_t>(s.sampling.has_value());
    if (s.sampling.has_value()) {
      PutSampling(w, *s.sampling);
      w.Put(s.num_prompt_tokens);
    }
  }
  return w.Take();
}

absl::StatusOr<StepPlan> DecodePlan(std::string_view bytes) {
  Reader r(bytes);
  uint32_t magic = 0, n = 0;
  StepPlan plan;
  if (!r.Get(&magic) || magic != kPlanMagic) return Truncated("step plan (bad magic)");
  if (!r.Get(&plan.step_id) || !r.GetVec(&plan.free_seq_ids) || !r.Get(&n)) {
    return Truncated("step plan");
  }
  for (uint32_t i = 0; i < n; ++i) {
    SeqStep s;
    uint8_t sample = 0, has_sampling = 0;
    if (!r.Get(&s.seq_id) || !r.Get(&s.epoch) || !r.GetVec(&s.token_ids) || !r.Get(&s.start_pos) ||
        !r.Get(&sample)) {
      return Truncated("step plan sequence");
    }
    s.sample = sample != 0;
    for (BlockTableDelta& d : s.blocks) {
      uint8_t reset = 0;
      if (!r.Get(&reset) || !r.GetVec(&d.append)) return Truncated("block table delta");
      d.reset = reset != 0;
    }
    if (!r.Get(&has_sampling)) return Truncated("step plan sequence");
    if (has_sampling) {
      SamplingParams sp;
      if (!GetSampling(r, &sp) || !r.Get(&s.num_prompt_tokens)) return Truncated("sampling params");
      s.sampling = std::move(sp);
    }
    plan.seqs.push_back(std::move(s));
  }
  if (!r.done()) return Truncated("step plan (trailing bytes)");
  return plan;
}

std::string EncodeResult(const StepResult& result) {
  Writer w;
  w.Put(kResultMagic);
  w.Put(result.step_id);
  w.Put<int32_t>(static_cast<int32_t>(result.status.code()));
  std::string msg(result.status.message());
  w.PutVec(std::vector<char>(msg.begin(), msg.end()));
  w.Put(result.step_seconds);
  w.Put<uint32_t>(static_cast<uint32_t>(result.seqs.size()));
  for (const SeqResult& s : result.seqs) {
    w.Put(s.seq_id);
    w.Put(s.epoch);
    w.Put(s.token_id);
    w.Put(s.logprob);
    w.PutVec(s.top_logprobs);
  }
  return w.Take();
}

absl::StatusOr<StepResult> DecodeResult(std::string_view bytes) {
  Reader r(bytes);
  uint32_t magic = 0, n = 0;
  int32_t code = 0;
  std::vector<char> msg;
  StepResult res;
  if (!r.Get(&magic) || magic != kResultMagic) return Truncated("step result (bad magic)");
  if (!r.Get(&res.step_id) || !r.Get(&code) || !r.GetVec(&msg) || !r.Get(&res.step_seconds) ||
      !r.Get(&n)) {
    return Truncated("step result");
  }
  if (code < 0 || code > 16) return Truncated("step result (status code)");
  res.status = absl::Status(static_cast<absl::StatusCode>(code), std::string(msg.begin(), msg.end()));
  for (uint32_t i = 0; i < n; ++i) {
    SeqResult s;
    if (!r.Get(&s.seq_id) || !r.Get(&s.epoch) || !r.Get(&s.token_id) || !r.Get(&s.logprob) ||
        !r.GetVec(&s.top_logprobs)) {
      return Truncated("step result sequence");
    }
    res.seqs.push_back(std::move(s));
  }
  if (!r.done()) return Truncated("step result (trailing bytes)");
  return res;
}

}  // namespace olmo
