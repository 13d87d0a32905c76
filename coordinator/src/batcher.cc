#include "lockstep/coordinator/batcher.h"

#include <algorithm>
#include <string>

#include "lockstep/common/error.h"

namespace lockstep::coordinator {

using control::SlotResult;
using control::SlotWork;
using control::Step;

Batcher::Batcher(BatcherOptions options) : options_(options) {
  if (options_.slots < 1) {
    throw InvalidInput("batcher: slots must be >= 1, got " + std::to_string(options_.slots));
  }
  slots_.resize(static_cast<size_t>(options_.slots));
}

size_t Batcher::running() const {
  return static_cast<size_t>(
      std::count_if(slots_.begin(), slots_.end(), [](const auto& s) { return s.has_value(); }));
}

void Batcher::Submit(Request request) {
  const std::string what = "request " + std::to_string(request.id);
  if (request.prompt.empty()) throw InvalidInput(what + ": the prompt needs at least one token");
  if (request.max_new < 0) throw InvalidInput(what + ": max_new must be >= 0");
  const int64_t positions = static_cast<int64_t>(request.prompt.size()) + request.max_new;
  if (options_.max_positions > 0 && positions > options_.max_positions) {
    throw InvalidInput(what + ": prompt + max_new = " + std::to_string(positions) +
                       " positions, a slot holds " + std::to_string(options_.max_positions));
  }
  auto same = [&](const Request& r) { return r.id == request.id; };
  const bool running_already = std::any_of(slots_.begin(), slots_.end(), [&](const auto& s) {
    return s.has_value() && s->request.id == request.id;
  });
  if (running_already || std::any_of(waiting_.begin(), waiting_.end(), same)) {
    throw InvalidInput(what + ": the id is already in use");
  }
  if (request.max_new == 0) {
    done_.push_back({request.id, {}, {}});
    return;
  }
  waiting_.push_back(std::move(request));
}

std::optional<Step> Batcher::Next() {
  if (pending_) throw Error(ErrorCode::kInternal, "batcher: Next() before the last step completed");
  for (std::optional<Running>& slot : slots_) {
    if (!slot && !waiting_.empty()) {
      Running r;
      r.request = std::move(waiting_.front());
      waiting_.pop_front();
      r.out.id = r.request.id;
      slot = std::move(r);
    }
  }
  Step step;
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (!slots_[i]) continue;
    const Running& r = *slots_[i];
    SlotWork w;
    w.slot = static_cast<int32_t>(i);
    w.request = r.request.id;
    w.position = r.position;
    if (r.replay) {
      w.position = 0;
      w.tokens = r.request.prompt;
      w.tokens.insert(w.tokens.end(), r.out.tokens.begin(), r.out.tokens.end());
    } else {
      w.tokens = r.fresh ? r.request.prompt : std::vector<int32_t>{r.out.tokens.back()};
    }
    w.reset = r.fresh || r.replay;
    w.sampling = r.request.sampling;
    w.sample_index = static_cast<int64_t>(r.out.tokens.size());
    w.logits = options_.keep_logits;
    step.work.push_back(std::move(w));
  }
  if (step.work.empty()) return std::nullopt;
  step.index = next_index_++;
  pending_ = step;
  return step;
}

std::vector<Finished> Batcher::Complete(std::span<const SlotResult> results) {
  if (!pending_) throw Error(ErrorCode::kInternal, "batcher: Complete() without a step");
  const Step step = std::move(*pending_);
  pending_.reset();
  if (results.size() != step.work.size()) {
    throw Error(ErrorCode::kInternal, "batcher: step " + std::to_string(step.index) + " had " +
                                          std::to_string(step.work.size()) +
                                          " slots at work, got " + std::to_string(results.size()) +
                                          " results");
  }
  std::vector<const SlotResult*> by_slot(slots_.size(), nullptr);
  for (const SlotResult& r : results) {
    if (r.slot < 0 || static_cast<size_t>(r.slot) >= slots_.size() ||
        by_slot[static_cast<size_t>(r.slot)] != nullptr || !slots_[static_cast<size_t>(r.slot)] ||
        slots_[static_cast<size_t>(r.slot)]->request.id != r.request) {
      throw Error(ErrorCode::kInternal,
                  "batcher: step " + std::to_string(step.index) + ": unexpected result for slot " +
                      std::to_string(r.slot) + " request " + std::to_string(r.request));
    }
    by_slot[static_cast<size_t>(r.slot)] = &r;
  }
  std::vector<Finished> out = TakeDone();
  for (const SlotWork& w : step.work) {
    const SlotResult& r = *by_slot[static_cast<size_t>(w.slot)];
    std::optional<Running>& slot = slots_[static_cast<size_t>(w.slot)];
    slot->position = w.position + static_cast<int64_t>(w.tokens.size());
    slot->fresh = false;
    slot->replay = false;
    slot->out.tokens.push_back(r.token);
    if (options_.keep_logits) slot->out.logits.push_back(r.logits);
    if (static_cast<int64_t>(slot->out.tokens.size()) == slot->request.max_new) {
      out.push_back(std::move(slot->out));
      slot.reset();
    }
  }
  return out;
}

void Batcher::Rewind() {
  pending_.reset();
  for (std::optional<Running>& slot : slots_) {
    if (slot && !slot->fresh) {
      slot->replay = true;
      slot->position = 0;
    }
  }
}

bool Batcher::Cancel(uint64_t id) {
  if (pending_) throw Error(ErrorCode::kInternal, "batcher: Cancel() while a step is pending");
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if (it->id == id) {
      waiting_.erase(it);
      done_.push_back({id, {}, {}});
      return true;
    }
  }
  for (std::optional<Running>& slot : slots_) {
    if (slot && slot->request.id == id) {
      done_.push_back(std::move(slot->out));
      slot.reset();
      return true;
    }
  }
  return false;
}

std::vector<Finished> Batcher::TakeDone() {
  std::vector<Finished> out = std::move(done_);
  done_.clear();
  return out;
}

}  // namespace lockstep::coordinator
