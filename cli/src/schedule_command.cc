// `lockstep schedule` (compile and validate the static global schedule of a plan) and
// `lockstep simulate` (run it in virtual time and measure it against its bounds).
#include <fstream>
#include <iomanip>
#include <iostream>
#include <set>
#include <sstream>

#include "command.h"
#include "lockstep/common/error.h"
#include "lockstep/common/file.h"
#include "lockstep/partition/cost_params.h"
#include "lockstep/partition/plan.h"
#include "lockstep/schedule/compact.h"
#include "lockstep/schedule/schedule.h"
#include "lockstep/schedule/schedule_file.h"
#include "lockstep/schedule/simulate.h"
#include "lockstep/schedule/trace.h"
#include "lockstep/schedule/validate.h"
#include "lockstep/topology/generators.h"
#include "lockstep/viz/report_json.h"
#include "lockstep/viz/svg.h"
#include "topology_arg.h"

namespace lockstep::cli {
namespace {

// A plan file carries its model, topology and cost figures; --model and --topology are optional
// checks that the plan is the one meant (a mismatch is an error naming what differs).
struct Inputs {
  std::string plan_path, model, topology, chip = "lpu-v1", cost_params;
  int spare_nodes = 1;
  int64_t tokens = 1, sequences = 0, prompt_len = 0, prefill_chunk = 2048;
  std::string prompt_buckets;
  bool prefill = false, modulo = false;
};

// "128,512,2048" -> ascending buckets (checked by schedule::PromptBucket).
std::vector<int64_t> ParseBuckets(const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      size_t used = 0;
      out.push_back(std::stoll(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw UsageError("--prompt-buckets: '" + item +
                       "' is not a whole number (e.g. 128,512,2048)");
    }
  }
  return out;
}

void AddInputOptions(po::options_description& opts, Inputs& in) {
  opts.add_options()("plan", po::value<std::string>(&in.plan_path),
                     "plan file written by 'lockstep plan -o' (binary; carries the model, the "
                     "topology and the cost figures)")(
      "model", po::value<std::string>(&in.model),
      "optional: a config.json the plan must have been made for")(
      "topology", po::value<std::string>(&in.topology),
      "optional: the topology the plan must have been made for (file, node, rack, racks:N)")(
      "chip", po::value<std::string>(&in.chip)->default_value("lpu-v1"),
      "chip preset, with --topology")("spare-nodes",
                                      po::value<int>(&in.spare_nodes)->default_value(1),
                                      "spare nodes per rack, with --topology")(
      "tokens", po::value<int64_t>(&in.tokens)->default_value(1), "decode tokens per sequence")(
      "sequences", po::value<int64_t>(&in.sequences)->default_value(0),
      "sequences in flight (0 = enough to fill the pipeline, as the KV cache allows)")(
      "prefill", po::bool_switch(&in.prefill), "also compile each sequence's prompt")(
      "modulo", po::bool_switch(&in.modulo),
      "accepted for old scripts: every schedule is now compact (one pass per phase and its "
      "repeat pattern; size independent of --tokens and --sequences)")(
      "prompt-len", po::value<int64_t>(&in.prompt_len)->default_value(0),
      "prompt length for --prefill (0 = the plan's)")(
      "prompt-buckets", po::value<std::string>(&in.prompt_buckets),
      "prompt lengths are padded up to one of these, e.g. 128,512,2048 (default: powers of two "
      "from 16)")("prefill-chunk", po::value<int64_t>(&in.prefill_chunk)->default_value(2048),
                  "most prompt tokens per prefill chunk (bounds activation memory)")(
      "cost-params", po::value<std::string>(&in.cost_params),
      "compile with this cost-parameters file's figures instead of the plan's (lockstep "
      "calibrate -o); the plan's own prediction was made with its figures");
}

struct Loaded {
  partition::Plan plan;
  schedule::CompactSchedule schedule;
  const topology::Topology& topo() const { return partition::PlanTopology(plan); }
};

Loaded CompileInputs(const Inputs& in, const std::string& command) {
  if (in.plan_path.empty()) {
    throw UsageError("--plan is required (see: lockstep " + command + " --help)");
  }
  if (in.tokens < 1 || in.sequences < 0 || in.prompt_len < 0 || in.prefill_chunk < 1) {
    throw UsageError(
        "--tokens and --prefill-chunk must be >= 1, --sequences and --prompt-len >= 0");
  }
  Loaded l{partition::ReadPlanFile(in.plan_path), {}};
  if (!in.model.empty()) {
    const std::string d =
        partition::ModelSpecDifference(l.plan.spec, partition::LoadModelSpec(in.model));
    if (!d.empty()) {
      throw InvalidInput(in.plan_path + ": the plan was made for another model than " + in.model +
                         " (" + d + ")");
    }
  }
  if (!in.topology.empty()) {
    std::optional<topology::ChipSpec> chip = topology::ChipPreset(in.chip);
    if (!chip) throw UsageError("--chip: unknown preset '" + in.chip + "' (valid: lpu-v1)");
    const std::string d = partition::TopologyDifference(
        l.topo(), ResolveTopology(in.topology, *chip, in.spare_nodes));
    if (!d.empty()) {
      throw InvalidInput(in.plan_path + ": the plan was made for another topology than " +
                         in.topology + " (" + d + ")");
    }
  }
  const std::vector<std::string> problems = partition::VerifyPlan(l.plan, l.plan.spec, l.topo());
  if (!problems.empty()) {
    throw InvalidInput(in.plan_path +
                       ": not a valid plan for its own model and topology: " + problems.front());
  }
  if (!in.cost_params.empty()) {
    // The plan's layout priced with other figures: they replace the plan's for the compile, the
    // validation and the simulation alike.
    const partition::CostParams p = partition::LoadCostParams(
        in.cost_params, l.topo().spec_of(l.plan.stages.front().chips.front()));
    l.plan.chip_params = p.chip;
    l.plan.link_params = p.link;
    l.plan.runtime_params = p.runtime;
    l.plan.cost_params_name = p.name;
  }
  schedule::ScheduleOptions o;
  o.tokens = in.tokens;
  o.sequences = in.sequences;
  o.prefill = in.prefill;
  o.prompt_len = in.prompt_len;
  o.prefill_chunk = in.prefill_chunk;
  if (in.modulo && in.prefill) {
    throw UsageError("--modulo is decode only (drop it: every schedule is compact now)");
  }
  if (!in.prompt_buckets.empty()) o.prompt_buckets = ParseBuckets(in.prompt_buckets);
  l.schedule = schedule::CompileCompact(l.plan, o);
  return l;
}

std::string Us(double ns) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << ns / 1000.0;
  return s.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  if (!f) throw Error(ErrorCode::kNotFound, "cannot write " + path);
  f << text;
  if (!f.flush()) throw Error(ErrorCode::kNotFound, "cannot write " + path);
}

int Schedule(const std::vector<std::string>& args, Context& ctx) {
  po::options_description opts("options");
  Inputs in;
  std::string out;
  AddInputOptions(opts, in);
  opts.add_options()("output,o", po::value<std::string>(&out),
                     "write the schedule (every program and link reservation): Cap'n Proto "
                     "(proto/schedule.capnp, what workers read), or JSON if it ends in .json");
  po::positional_options_description pos;
  po::variables_map vm;
  if (!ParseOrHelp(args,
                   "lockstep schedule --plan PLAN [--tokens N] [--sequences M] [--prefill "
                   "--prompt-len P [--prompt-buckets B,..] [--prefill-chunk C]] [-o SCHEDULE] "
                   "[--json]\n"
                   "Compiles the plan into one program per chip and one reservation table per "
                   "link direction, and validates it.",
                   opts, pos, vm)) {
    return 0;
  }
  const Loaded l = CompileInputs(in, "schedule");
  const schedule::CompactSchedule& s = l.schedule;
  schedule::ValidateOptions vo;
  vo.link_params = l.plan.link_params;
  const std::vector<std::string> problems = schedule::Validate(s, l.topo(), vo);
  if (!problems.empty()) {
    throw Error(ErrorCode::kInternal, "compiled schedule is invalid (" +
                                          std::to_string(problems.size()) +
                                          " problems): " + problems.front());
  }
  const std::string bytes = schedule::SerializeScheduleFile(s);
  if (!out.empty()) {
    schedule::WriteScheduleFile(out, s);
    ctx.log->info("wrote {}", out);
  }
  // The run the compact form stands for: every copy's transfers and instructions.
  int64_t reservations = 0;
  size_t forwarders = 0;
  std::set<std::pair<topology::LinkId, topology::ChipId>> directions;
  nlohmann::json phases = nlohmann::json::array();
  for (size_t x = 0; x < s.phases.size(); ++x) {
    const schedule::Phase& ph = s.phases[x];
    phases.push_back({{"kind", schedule::PhaseKindName(ph.kind)},
                      {"passes", ph.passes},
                      {"slots", ph.slots},
                      {"slot_ns", ph.slot_ns},
                      {"start_ns", ph.start_ns}});
    for (const schedule::CompactChip& c : s.chips) {
      for (const schedule::Instruction& i : c.bodies[x]) {
        if (i.kind != schedule::InstrKind::kSend && i.kind != schedule::InstrKind::kForward) {
          continue;
        }
        reservations += ph.copies();
        directions.insert({i.link, c.chip});
      }
    }
  }
  for (const schedule::CompactChip& c : s.chips) forwarders += c.stage < 0;
  const schedule::Phase& decode = s.phases.back();
  if (ctx.json) {
    PrintJson({{"model", s.model},
               {"topology", s.topology},
               {"valid", true},
               {"stages", s.stages},
               {"tokens", s.tokens},
               {"sequences", s.sequences},
               {"token_latency_ns", s.token_latency_ns},
               {"predicted_token_latency_ns", l.plan.predicted.token_latency_ns},
               {"time_to_first_token_ns",
                s.prefill ? nlohmann::json(s.time_to_first_token_ns) : nlohmann::json()},
               {"predicted_time_to_first_token_ns", l.plan.predicted.time_to_first_token_ns},
               {"prompt_len", s.prefill ? nlohmann::json(s.prompt_len) : nlohmann::json()},
               {"prompt_bucket", s.prefill ? nlohmann::json(s.prompt_bucket) : nlohmann::json()},
               {"prefill_chunks", s.prefill_chunks},
               {"prefill_chunk_tokens", s.prefill_chunk_tokens},
               {"prefill_peak_bytes", s.prefill_peak_bytes},
               {"cycle_ns", s.cycle_ns},
               {"period_ns", s.period_ns},
               {"makespan_ns", s.makespan_ns},
               {"chips_used", s.chips.size()},
               {"forwarding_only_chips", forwarders},
               {"link_directions_used", directions.size()},
               {"reservations", reservations},
               {"instructions", s.body_instruction_count()},
               {"run_instructions", s.instruction_count()},
               {"phases", std::move(phases)},
               {"modulo", true},
               {"repeat_ns", decode.pass_ns()},
               {"schedule_bytes", bytes.size()}});
    return 0;
  }
  std::cout << s.model << " on " << s.topology << ": " << s.stages << " stages, " << s.tokens
            << " token(s) x " << s.sequences << " sequence(s) in flight — valid\n"
            << "token latency " << Us(static_cast<double>(s.token_latency_ns))
            << " us (plan predicted " << Us(static_cast<double>(l.plan.predicted.token_latency_ns))
            << " us), cycle " << Us(static_cast<double>(s.cycle_ns)) << " us, period "
            << Us(static_cast<double>(s.period_ns)) << " us\n"
            << s.chips.size() << " chips (" << forwarders << " only forward), " << directions.size()
            << " link directions, " << reservations << " reservations, " << s.instruction_count()
            << " instructions in the run, " << s.body_instruction_count()
            << " stored (one pass per phase, repeated for every slot and token)\n"
            << "schedule file: " << bytes.size() << " bytes, indexed by chip\n";
  if (s.prefill) {
    std::cout << "prefill: prompt " << s.prompt_len << " -> bucket " << s.prompt_bucket << " in "
              << s.prefill_chunks << " chunk(s) of " << s.prefill_chunk_tokens
              << " tokens; time to first token "
              << Us(static_cast<double>(s.time_to_first_token_ns)) << " us (plan predicted "
              << Us(static_cast<double>(l.plan.predicted.time_to_first_token_ns))
              << " us for prompt " << l.plan.prompt_len << "); peak memory per chip " << std::fixed
              << std::setprecision(1)
              << static_cast<double>(s.prefill_peak_bytes) / (1024.0 * 1024.0) << " MiB\n";
  }
  return 0;
}

int Simulate(const std::vector<std::string>& args, Context& ctx) {
  po::options_description opts("options");
  Inputs in;
  std::string trace, svg;
  double jitter = 0;
  uint64_t seed = 1;
  std::vector<int> failed;
  AddInputOptions(opts, in);
  opts.add_options()("jitter", po::value<double>(&jitter)->default_value(0),
                     "stretch each compute by up to this fraction (uniform, seeded)")(
      "seed", po::value<uint64_t>(&seed)->default_value(1), "seed of the jitter")(
      "fail-link", po::value<std::vector<int>>(&failed)->composing(),
      "a link id that fails (repeatable)")("trace", po::value<std::string>(&trace),
                                           "write a Chrome trace-event JSON file (Perfetto)")(
      "svg", po::value<std::string>(&svg),
      "draw one simulated decode period as an SVG Gantt chart (chips x time; compute, reduce, "
      "send, forward, receive; sequence 0's critical path in red)");
  po::positional_options_description pos;
  po::variables_map vm;
  if (!ParseOrHelp(
          args,
          "lockstep simulate --plan PLAN [--tokens N] [--sequences M] [--svg F.svg] [--jitter X "
          "--seed S] [--fail-link L] [--trace FILE] [--json]\n"
          "Runs the compiled schedule in virtual time (discrete events).",
          opts, pos, vm)) {
    return 0;
  }
  if (jitter < 0 || jitter > 10) throw UsageError("--jitter must be in [0, 10]");
  const Loaded l = CompileInputs(in, "simulate");
  schedule::SimulateOptions so;
  so.jitter = jitter;
  so.seed = seed;
  for (const int link : failed) {
    if (link < 0 || link >= l.topo().link_count()) {
      throw UsageError("--fail-link " + std::to_string(link) +
                       ": the plan's topology has links 0.." +
                       std::to_string(l.topo().link_count() - 1));
    }
  }
  so.failed_links.assign(failed.begin(), failed.end());
  so.keep_times = !svg.empty();
  so.link_params = l.plan.link_params;
  const schedule::SimResult r = schedule::Simulate(l.schedule, l.topo(), so);
  if (!svg.empty() && r.ok) {
    WriteFileAtomically(svg, viz::GanttSvg(l.plan, l.schedule, r));
    ctx.log->info("wrote {}", svg);
  }
  if (!trace.empty()) {
    // A trace names every instruction of the run: the explicit form, run by the same simulator.
    const schedule::GlobalSchedule all = schedule::Expand(l.schedule);
    so.keep_times = true;
    const schedule::SimResult explicit_run = schedule::Simulate(all, l.topo(), so);
    WriteFile(trace, schedule::TraceJson(all, &explicit_run));
    ctx.log->info("wrote {}", trace);
  }
  if (!r.ok) throw Error(ErrorCode::kDisconnected, "simulation failed: " + r.failure);
  const schedule::SimMetrics& m = r.metrics;
  if (ctx.json) {
    PrintJson(viz::SimulateJson(l.plan, l.schedule, r));
    return 0;
  }
  auto line = [](const char* name, const schedule::Measured& x, double scale, const char* unit) {
    std::cout << "  " << std::left << std::setw(24) << name << std::right << std::setw(12)
              << std::fixed << std::setprecision(3) << x.value * scale << " " << std::setw(6)
              << unit << " bound " << std::setw(12) << x.bound * scale << "  ratio "
              << std::setprecision(3) << x.ratio << "\n";
  };
  std::cout << l.schedule.model << " on " << l.schedule.topology << ": " << l.schedule.tokens
            << " token(s) x " << l.schedule.sequences << " sequence(s), jitter " << jitter << "\n";
  line("token latency", m.token_latency_ns, 1e-3, "us");
  line("tokens/s per user", m.tokens_per_s_per_user, 1, "");
  line("tokens/s", m.tokens_per_s, 1, "");
  line("compute utilization", m.compute_utilization, 1, "");
  line("link utilization", m.link_utilization, 1, "");
  line("bubble fraction", m.bubble_fraction, 1, "");
  if (l.schedule.prefill) line("time to first token", m.time_to_first_token_ns, 1e-3, "us");
  const std::vector<schedule::GapShare> contributors = viz::GapContributors(r);
  if (!contributors.empty()) {
    std::cout << "  gap to the token latency bound: "
              << Us(m.token_latency_ns.value - m.token_latency_ns.bound)
              << " us; the last token's critical path spends";
    for (size_t k = 0; k < contributors.size() && k < 4; ++k) {
      std::cout << (k ? ", " : " ") << Us(static_cast<double>(contributors[k].ns)) << " us on "
                << contributors[k].what;
    }
    std::cout << "\n";
  }
  std::cout << "  predicted by the plan: "
            << Us(static_cast<double>(l.plan.predicted.token_latency_ns))
            << " us per token, time to first token "
            << Us(static_cast<double>(l.plan.predicted.time_to_first_token_ns)) << " us"
            << (l.schedule.prefill ? "" : " (add --prefill to compile the prompt)") << "\n";
  return 0;
}

}  // namespace

CommandGroup ScheduleCommand() {
  return {"schedule", "compile a plan into the static global schedule and validate it", Schedule};
}
CommandGroup SimulateCommand() {
  return {"simulate", "run a plan's schedule in virtual time and measure it", Simulate};
}

}  // namespace lockstep::cli
