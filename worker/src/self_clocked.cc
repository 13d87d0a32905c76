// ChipRunner::Run: a chip runs step after step on its own (chip_runner.h, run_control.h).
#include <chrono>
#include <cmath>
#include <deque>
#include <thread>

#include "chip_runner_impl.h"
#include "step_planner.h"

namespace lockstep::worker {
namespace {

using schedule::InstrKind;
using schedule::Instruction;
using schedule::Tag;

// One step in progress on this chip.
struct Exec {
  int64_t step = 0;
  StepKind kind;
  const schedule::ChipProgram* program = nullptr;
  int64_t t0 = 0;      // T(step): the scheduled start of the program's time 0 in the run
  size_t next = 0;     // the next instruction to execute
  int32_t chunks = 0;  // prefill: the prompt's chunks (tokens -chunks .. -1)
  // By (token, sequence) of the program's instructions.
  std::map<std::pair<int32_t, int32_t>, SlotState> slots;
  std::vector<int64_t> v_end;  // virtual time: each executed instruction's end

  bool done() const { return next == program->instructions.size(); }
  int64_t next_time() const { return t0 + program->instructions[next].start_ns; }
};

int64_t SteadyNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Waits until the steady clock reads `target` (sleeping while far, spinning the last stretch so
// the start is not late by a scheduler's wake-up).
void WaitUntil(int64_t target) {
  constexpr int64_t kSpin = 200'000;
  int64_t now = SteadyNs();
  if (target - now > kSpin) {
    std::this_thread::sleep_for(std::chrono::nanoseconds(target - now - kSpin));
  }
  while (SteadyNs() < target) {
  }
}

int32_t ChunksOf(const schedule::ChipProgram& p) {
  int32_t low = 0;
  for (const Instruction& in : p.instructions) low = std::min(low, in.token);
  return -low;
}

}  // namespace

class SelfClockedRun {
 public:
  SelfClockedRun(ChipRunner::Impl& im, RunControl& control)
      : im_(im),
        control_(control),
        setup_(im.setup),
        lookahead_(im.setup.lookahead),
        slots_(im.slots),
        stage0_(im.setup.stage == 0),
        sampler_(im.shard && im.shard->weights().units.head && im.setup.rank == 0),
        kv_(static_cast<size_t>(im.slots), 0),
        next_token_(static_cast<size_t>(im.slots), -1),
        live_(static_cast<size_t>(im.slots), false),
        held_(static_cast<size_t>(im.slots)),
        generated_(static_cast<size_t>(im.slots), 0) {
    const std::string chip = "chip " + std::to_string(setup_.program.chip);
    if (lookahead_ < 1) throw InvalidInput(chip + ": the kind lookahead must be >= 1");
    if (setup_.repeat_ns < 0) throw InvalidInput(chip + ": the repeat interval must be >= 0");
    if (setup_.pace != 0 && !(setup_.pace >= 1)) {
      throw InvalidInput(chip + ": pace must be >= 1 (time dilation), not " +
                         std::to_string(setup_.pace));
    }
    std::vector<int64_t> buckets;
    for (const ChipSetup::Prefill& p : setup_.prefill) {
      if ((!buckets.empty() && p.bucket <= buckets.back()) || p.bucket < 1 || p.chunk_tokens < 1) {
        throw InvalidInput(chip +
                           ": prefill programs must have ascending buckets >= 1 and chunks >= 1");
      }
      buckets.push_back(p.bucket);
      for (topology::LinkId link : schedule::ProgramLinks(p.program)) {
        if (im_.by_link.count(link) == 0) {
          throw InvalidInput(chip + ": the prefill program of bucket " + std::to_string(p.bucket) +
                             " uses link " + std::to_string(link) + ", which has no endpoint");
        }
      }
      chunks_.push_back(ChunksOf(p.program));
    }
    if (stage0_ && setup_.rank == 0) planner_.emplace(slots_, std::move(buckets), lookahead_);
  }

  RunReport Go() {
    for (int64_t k = 0; k < lookahead_; ++k) Learn(k, EncodeStepKind(StepKind{}));
    const int64_t first_start =
        setup_.program.instructions.empty() ? 0 : setup_.program.instructions.front().start_ns;
    while (true) {
      if (active_.empty()) {
        const StepKind& k = KindToStart();
        if (k.kind == StepKind::kStop) break;
        Start(next_start_++, k);
        continue;
      }
      // The step in progress whose next instruction comes first (a prefill step runs alone).
      Exec* first = &active_.front();
      for (Exec& e : active_) {
        if (e.next_time() < first->next_time()) first = &e;
      }
      if (first->kind.kind == StepKind::kDecode && setup_.repeat_ns > 0) {
        // The next step starts first if its first instruction comes strictly earlier (ties go to
        // the earlier step): it must then be known, and only a decode step overlaps.
        const int64_t t = last_t0_ + setup_.repeat_ns + first_start;
        if (t < first->next_time()) {
          const StepKind& k = KindToStart();
          if (k.kind == StepKind::kDecode) {
            Start(next_start_++, k);
            continue;
          }
        }
      }
      Execute(*first);
      if (first->done()) Finish(*first);
    }
    if (!stash_.empty()) {
      const auto& [key, m] = *stash_.begin();
      throw Error(ErrorCode::kProtocol, Where(std::get<1>(key)) + "a message on link " +
                                            std::to_string(std::get<0>(key)) + " (tensor " +
                                            std::to_string(std::get<2>(key)) +
                                            ") after the run stopped at step " +
                                            std::to_string(next_start_));
    }
    return report_;
  }

 private:
  std::string Where(int64_t step) const {
    return "chip " + std::to_string(setup_.program.chip) + " step " + std::to_string(step) + ": ";
  }

  // Records the kind of `step` a message announces (or the planner decided).
  void Learn(int64_t step, uint64_t code) {
    const std::optional<StepKind> kind = DecodeStepKind(code);
    if (!kind) return;
    auto [it, fresh] = kinds_.try_emplace(step, *kind);
    if (!fresh && !(it->second == *kind)) {
      throw Error(ErrorCode::kProtocol,
                  Where(step) + "two messages announce different kinds for it");
    }
    im_.kinds[step] = code;
  }

  // The kind of the next step to start. Rank 0 of stage 0 knows it (decided `lookahead` steps
  // ahead); every other chip must have learnt it from its data by now.
  const StepKind& KindToStart() {
    auto it = kinds_.find(next_start_);
    if (it == kinds_.end()) {
      throw Error(ErrorCode::kProtocol,
                  Where(next_start_) +
                      "its kind is not known when it must start: no message of "
                      "the steps before announced it (the kind lookahead " +
                      std::to_string(lookahead_) + " is too short for this schedule)");
    }
    return it->second;
  }

  // Rank 0 of stage 0: decides every step up to `through`.
  void DecideThrough(int64_t through) {
    while (planner_->next_step() <= through) {
      Offer(control_.Poll(false));
      std::optional<StepKind> kind = planner_->Decide();
      while (!kind) {
        Offer(control_.Poll(true));  // nothing to do and the log is open: wait for it
        kind = planner_->Decide();
      }
      Learn(planner_->next_step() - 1, EncodeStepKind(*kind));
    }
  }

  void Offer(const RunControl::Inbox& inbox) {
    for (const Admission& a : inbox.admissions) {
      if (std::optional<std::string> why = planner_->Offer(a)) {
        control_.Refuse(a, planner_->next_step() - 1, *why);
      }
    }
    if (inbox.closed) planner_->Close();
  }

  void Start(int64_t step, const StepKind& kind) {
    if (planner_) DecideThrough(step + lookahead_);
    Exec e;
    e.step = step;
    e.kind = kind;
    // T(step): R after a decode step for a decode step, else after the last one's whole program.
    if (started_) {
      const bool overlap = last_kind_.kind == StepKind::kDecode && kind.kind == StepKind::kDecode &&
                           setup_.repeat_ns > 0;
      last_t0_ += overlap ? setup_.repeat_ns : Makespan(last_kind_);
    }
    started_ = true;
    last_kind_ = kind;
    e.t0 = last_t0_;
    if (kind.kind == StepKind::kDecode) {
      e.program = &setup_.program;
    } else {
      if (kind.bucket < 0 || static_cast<size_t>(kind.bucket) >= setup_.prefill.size() ||
          kind.slot >= slots_) {
        throw Error(ErrorCode::kProtocol,
                    Where(step) + "a prefill of slot " + std::to_string(kind.slot) +
                        " with prefill program " + std::to_string(kind.bucket) +
                        ", but there are " + std::to_string(slots_) + " slots and " +
                        std::to_string(setup_.prefill.size()) + " prefill programs");
      }
      e.program = &setup_.prefill[static_cast<size_t>(kind.bucket)].program;
      e.chunks = chunks_[static_cast<size_t>(kind.bucket)];
      const size_t slot = static_cast<size_t>(kind.slot);
      // A new sequence takes the slot: its KV cache starts empty on every stage.
      if (im_.shard) im_.shard->ResetSlot(kind.slot);
      kv_[slot] = 0;
      live_[slot] = false;
      if (stage0_ || sampler_) {
        held_[slot] = control_.AwaitAdmission(kind.admission);
        if (held_[slot]->number != kind.admission) {
          throw Error(ErrorCode::kInternal, Where(step) + "asked for admission " +
                                                std::to_string(kind.admission) + ", got " +
                                                std::to_string(held_[slot]->number));
        }
        generated_[slot] = held_[slot]->generated;
      }
      ++report_.prefill_steps;
    }
    if (setup_.recorder != nullptr) setup_.recorder->BeginStep(step);
    active_.push_back(std::move(e));
    if (active_.back().done()) Finish(active_.back());  // nothing of this step on this chip
  }

  void Finish(const Exec& e) {
    for (auto it = stash_.begin(); it != stash_.end(); ++it) {
      if (std::get<1>(it->first) == e.step) {
        throw Error(ErrorCode::kProtocol, Where(e.step) + "a message on link " +
                                              std::to_string(std::get<0>(it->first)) + " (tensor " +
                                              std::to_string(std::get<2>(it->first)) +
                                              ") that its program does not receive");
      }
    }
    if (sampler_) {
      std::vector<SampledToken> tokens;
      for (const auto& [key, st] : e.slots) {
        if (!st.result) continue;
        SampledToken t;
        t.slot = st.result->slot;
        t.request = st.result->request;
        t.index = st.work->sample_index;
        t.token = st.result->token;
        t.last = st.result_last;
        t.logits = st.result->logits;
        tokens.push_back(std::move(t));
      }
      std::sort(tokens.begin(), tokens.end(),
                [](const SampledToken& a, const SampledToken& b) { return a.slot < b.slot; });
      report_.tokens += static_cast<int64_t>(tokens.size());
      if (!tokens.empty()) control_.Emit(e.step, std::move(tokens));
    }
    ++report_.steps;
    if (setup_.recorder != nullptr) setup_.recorder->CompleteStep(e.step);
    // Kinds of steps every chip has left behind are not needed any more.
    const int64_t oldest = active_.size() > 1 ? std::min(active_.front().step, e.step) : e.step;
    kinds_.erase(kinds_.begin(), kinds_.lower_bound(oldest));
    im_.kinds.erase(im_.kinds.begin(), im_.kinds.lower_bound(oldest));
    slot_end_.erase(slot_end_.begin(), slot_end_.lower_bound({oldest - 1, 0}));
    for (auto it = active_.begin(); it != active_.end(); ++it) {
      if (&*it == &e) {
        active_.erase(it);
        break;
      }
    }
  }

  int64_t Makespan(const StepKind& k) const {
    return k.kind == StepKind::kPrefill ? setup_.prefill[static_cast<size_t>(k.bucket)].makespan_ns
                                        : setup_.decode_makespan_ns;
  }

  // The slot an instruction of `e` works on (a prefill program's sequence 0 is the kind's slot).
  static int32_t SlotOf(const Exec& e, const Instruction& in) {
    return e.kind.kind == StepKind::kPrefill ? e.kind.slot : in.sequence;
  }

  // The slot's work in this step from `tokens` (stage 0) or a message's `rows` (later stages):
  // its KV position continues the slot's cache; the sampling chip adds how to sample.
  void Activate(const Exec& e, const Instruction& in, SlotState& st, std::vector<int32_t> tokens,
                int64_t rows) {
    const int32_t slot = SlotOf(e, in);
    const size_t s = static_cast<size_t>(slot);
    SlotWork w;
    w.slot = slot;
    w.position = kv_[s];
    w.tokens = std::move(tokens);
    kv_[s] += rows;
    if (held_[s]) {
      const Admission& a = *held_[s];
      w.request = a.request;
      w.sampling = a.sampling;
      w.logits = a.logits;
      st.max_new = a.max_new;
      // One token per decode step, and one per prefill (its last chunk samples).
      if (sampler_ && (e.kind.kind == StepKind::kDecode || in.token == -1)) {
        w.sample_index = generated_[s]++;
      }
    }
    st.own = std::move(w);
    st.work = &*st.own;
    st.rows = rows;
    st.known = true;
  }

  SlotState& StateFor(Exec& e, const Instruction& in) {
    auto [it, fresh] = e.slots.try_emplace({in.token, in.sequence});
    SlotState& st = it->second;
    if (!fresh) return st;
    st.known = !im_.shard || stage0_;
    if (!stage0_) return st;  // learnt from the slot's first message
    const size_t s = static_cast<size_t>(SlotOf(e, in));
    if (e.kind.kind == StepKind::kDecode) {
      if (live_[s]) Activate(e, in, st, {next_token_[s]}, 1);
      return st;
    }
    // Prefill: the prompt fills the chunks from the end.
    const std::vector<int32_t>& prompt = held_[s]->tokens;
    const int64_t per = setup_.prefill[static_cast<size_t>(e.kind.bucket)].chunk_tokens;
    const int64_t chunk = in.token + e.chunks;
    const int64_t end = static_cast<int64_t>(prompt.size()) - (e.chunks - 1 - chunk) * per;
    const int64_t begin = std::max<int64_t>(0, end - per);
    if (end > 0) {
      Activate(e, in, st, std::vector<int32_t>(prompt.begin() + begin, prompt.begin() + end),
               end - begin);
    }
    return st;
  }

  // A message for the slot's step: a chip past stage 0 learns from the first one whether the slot
  // works (its rows) or idles.
  void OnMessage(const Exec& e, const Instruction& in, SlotState& st, const transport::Message& m) {
    if (st.known) return;
    const int64_t rows = m.header.shape.empty() ? 0 : m.header.shape.front();
    if (rows > 0) {
      Activate(e, in, st, {}, rows);
    } else {
      st.known = true;
    }
  }

  // Stage 0: the token the sampling chip sent back for the slot.
  void OnToken(const Exec& e, const Instruction& in, const SlotState& st) {
    if (!st.token_in || st.token_in->token < 0) return;  // an idle slot
    const size_t s = static_cast<size_t>(SlotOf(e, in));
    next_token_[s] = st.token_in->token;
    live_[s] = !st.token_in->last;
    if (st.token_in->last && planner_) planner_->Free(static_cast<int32_t>(s));
  }

  // The message `msg` of `step` on `link`: held already, or read off the link (holding what
  // comes before it, whatever its step).
  transport::Message Take(topology::LinkId link, int64_t step, int64_t msg) {
    auto held = stash_.find({link, step, msg});
    if (held != stash_.end()) {
      transport::Message m = std::move(held->second);
      stash_.erase(held);
      return m;
    }
    transport::Expect any;
    any.schedule_id = setup_.schedule_id;
    any.any_step = true;
    while (true) {
      transport::Message m = im_.Link(link).Receive(any, setup_.timeout);
      Learn(m.header.step + lookahead_, m.header.ahead);
      const int64_t got = m.header.step;
      const auto tensor = static_cast<int64_t>(m.header.tensor_id);
      if (got == step && tensor == msg) return m;
      if (got < active_.front().step) {
        throw Error(ErrorCode::kProtocol,
                    Where(step) + "link " + std::to_string(link) + " brought step " +
                        std::to_string(got) + " (tensor " + std::to_string(tensor) +
                        "), a step this chip has finished, while it waits for tensor " +
                        std::to_string(msg));
      }
      if (!stash_.emplace(std::make_tuple(link, got, tensor), std::move(m)).second) {
        throw Error(ErrorCode::kProtocol, Where(got) + "link " + std::to_string(link) +
                                              " brought tensor " + std::to_string(tensor) +
                                              " twice");
      }
    }
  }

  // Virtual time: the earliest start the link model (schedule.h) allows the Recv or Forward `in`
  // of a message whose previous hop started at `sent` (the sender's virtual start): a Recv once
  // the message has wholly arrived (one hop's latency and payload after), a Forward cut-through,
  // once its head has arrived, but not so early that its tail would leave before it is in.
  int64_t VirtualReady(const Instruction& in, int64_t sent) {
    const transport::LinkSpec& spec = im_.Link(in.in_link).link();
    topology::Link link;
    link.latency_ns = spec.latency_ns;
    link.bandwidth_bytes_per_s = spec.bytes_per_second;
    const int64_t hop = schedule::HopTimeNs(link, in.bytes, setup_.link_params);
    if (in.kind == InstrKind::kRecv) return sent + hop;
    const int64_t latency = setup_.link_params.hop_latency_ns >= 0
                                ? setup_.link_params.hop_latency_ns
                                : link.latency_ns;
    // The Forward holds its outgoing link for its planned time (end - start).
    return std::max(sent + latency, sent + hop - (in.end_ns - in.start_ns));
  }

  // Virtual time: when instruction `i` of `e` starts (`sent`: the virtual start of the hop that
  // brought its message, or -1) and ends; records both, the resource's use and the start's lag
  // behind the schedule, and sets the virtual start a Send or Forward stamps on its message.
  void VirtualTimes(Exec& e, size_t i, int64_t sent) {
    const Instruction& in = e.program->instructions[i];
    const int64_t scheduled = e.t0 + in.start_ns;
    const int32_t slot = SlotOf(e, in);
    int64_t start = sent >= 0 ? std::max(scheduled, VirtualReady(in, sent)) : scheduled;
    for (int32_t d : in.deps) start = std::max(start, e.v_end[static_cast<size_t>(d)]);
    if (in.deps.empty()) {  // the slot's previous step on this chip (Unroll's rule)
      auto before = slot_end_.find({e.step - 1, slot});
      if (before != slot_end_.end()) start = std::max(start, before->second);
    }
    const bool compute = in.kind == InstrKind::kCompute || in.kind == InstrKind::kReduce;
    const bool out = in.kind == InstrKind::kSend || in.kind == InstrKind::kForward;
    if (compute) start = std::max(start, compute_free_);
    if (out) start = std::max(start, link_free_[in.link]);
    const int64_t end = start + (compute ? in.duration_ns : out ? in.end_ns - in.start_ns : 0);
    if (compute) compute_free_ = end;
    if (out) link_free_[in.link] = end;
    im_.send_time = out ? start : -1;
    e.v_end[i] = end;
    int64_t& slot_end = slot_end_[{e.step, slot}];
    slot_end = std::max(slot_end, end);
    report_.lag.Add(start - scheduled);
  }

  // Paced: waits for the instruction's scheduled start, dilated; records how late it started.
  void Pace(const Exec& e, const Instruction& in) {
    const int64_t target =
        setup_.epoch_ns +
        static_cast<int64_t>(std::llround(setup_.pace * static_cast<double>(e.t0 + in.start_ns)));
    WaitUntil(target);
    report_.lag.Add(SteadyNs() - target);
  }

  void Execute(Exec& e) {
    const size_t i = e.next++;
    const Instruction& in = e.program->instructions[i];
    FlightRecorder* recorder = setup_.recorder;
    if (recorder != nullptr) {
      control::FlightEntry entry = im_.Entry(in, i);
      entry.step = e.step;
      recorder->BeginOp(entry);
    }
    const bool virtual_time = setup_.virtual_time;
    if (virtual_time && e.v_end.empty()) e.v_end.assign(e.program->instructions.size(), 0);
    if (!virtual_time && setup_.pace > 0) Pace(e, in);
    im_.Guarded(in, i, e.step, [&] {
      const bool receives = in.kind == InstrKind::kRecv || in.kind == InstrKind::kForward;
      std::optional<transport::Message> m;
      if (receives) m = Take(in.in_link, e.step, in.in_msg);
      if (virtual_time) VirtualTimes(e, i, m ? m->header.send_time_ns : -1);
      if (in.kind == InstrKind::kForward) {
        im_.Forward(in, e.step, std::move(*m));
        return;
      }
      SlotState& st = StateFor(e, in);
      switch (in.kind) {
        case InstrKind::kCompute:
          im_.Compute(in, i, e.step, st);
          break;
        case InstrKind::kReduce:
          im_.Reduce(in, i, e.step, st);
          break;
        case InstrKind::kSend:
          im_.SendOut(in, i, e.step, st);
          break;
        case InstrKind::kRecv: {
          OnMessage(e, in, st, *m);
          im_.ReceiveIn(in, i, e.step, st, std::move(*m));
          if (in.tag == Tag::kToken && stage0_) OnToken(e, in, st);
          break;
        }
        case InstrKind::kForward:
          break;
      }
      if (stage0_ && sampler_ && st.result && !st.token_in) {
        // One stage: the sampling chip is stage 0's rank 0, whose token goes to the other ranks
        // over links and to itself as it is drawn.
        st.token_in = SlotState::TokenIn{st.result->token, st.result_last};
        OnToken(e, in, st);
      }
    });
    if (recorder != nullptr) recorder->EndOp();
  }

  ChipRunner::Impl& im_;
  RunControl& control_;
  const ChipSetup& setup_;
  const int lookahead_;
  const int32_t slots_;
  const bool stage0_;
  const bool sampler_;
  std::optional<StepPlanner> planner_;  // rank 0 of stage 0
  std::vector<int32_t> chunks_;         // per prefill program
  std::map<int64_t, StepKind> kinds_;
  std::deque<Exec> active_;  // steps started and not finished, in step order
  int64_t next_start_ = 0;
  // The last step started: its T and kind.
  bool started_ = false;
  int64_t last_t0_ = 0;
  StepKind last_kind_;
  // Virtual time: when the compute unit and each outgoing link direction are free, and when each
  // (step, slot)'s last instruction on this chip ended.
  int64_t compute_free_ = 0;
  std::map<topology::LinkId, int64_t> link_free_;
  std::map<std::pair<int32_t, int64_t>, int64_t> slot_end_;
  std::vector<int64_t> kv_;  // per slot: KV positions filled (stage chips)
  // Stage 0, per slot: the next token to feed and whether its request runs.
  std::vector<int32_t> next_token_;
  std::vector<bool> live_;
  // Stage 0 and the sampling chip, per slot: its request's admission and tokens drawn so far.
  std::vector<std::optional<Admission>> held_;
  std::vector<int64_t> generated_;
  std::map<std::tuple<topology::LinkId, int64_t, int64_t>, transport::Message> stash_;
  RunReport report_;
};

void ChipRunner::SetTiming(double pace, int64_t epoch_ns, bool virtual_time) {
  if (pace != 0 && !(pace >= 1)) {
    throw InvalidInput("chip " + std::to_string(chip()) +
                       ": pace must be >= 1 (time dilation), not " + std::to_string(pace));
  }
  impl_->setup.pace = pace;
  impl_->setup.epoch_ns = epoch_ns;
  impl_->setup.virtual_time = virtual_time;
}

RunReport ChipRunner::Run(RunControl& control) {
  if (impl_->closed) {
    throw Error(ErrorCode::kDisconnected, "chip " + std::to_string(chip()) + " is closed");
  }
  SelfClockedRun run(*impl_, control);
  return run.Go();
}

}  // namespace lockstep::worker
