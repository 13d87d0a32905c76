// `lockstep plan`: split a model into pipeline stages x tensor-parallel groups on a topology and
// predict its latency and throughput.
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include "command.h"
#include "lockstep/common/error.h"
#include "lockstep/common/file.h"
#include "lockstep/partition/cost_params.h"
#include "lockstep/partition/plan.h"
#include "lockstep/topology/generators.h"
#include "lockstep/viz/svg.h"
#include "topology_arg.h"

namespace lockstep::cli {
namespace {

std::string Mib(int64_t bytes) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << static_cast<double>(bytes) / (1024.0 * 1024.0);
  return s.str();
}

std::string Us(int64_t ns) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << static_cast<double>(ns) / 1000.0;
  return s.str();
}

// The command line of `plan`, checked (ParsePlanFlags).
struct PlanFlags {
  std::string model, topo_name = "rack", chip_name = "lpu-v1", dtype_name = "int8",
                     objective_name = "latency", out, svg, cost_params;
  int64_t batch = 1, context = 4096, prompt_len = 0;
  int tp = 0, pp = 0, spare_nodes = 1;
  double target = 0;
  bool target_given = false, explain = false;
  topology::ChipSpec chip;
  Dtype dtype{};
  partition::Objective objective{};
};

// Parses and checks `args`; nullopt when --help was printed. --target-tokens-per-s is checked
// after the model loads (MakePlanInputs), as it always was.
std::optional<PlanFlags> ParsePlanFlags(const std::vector<std::string>& args) {
  PlanFlags f;
  po::options_description opts("options");
  opts.add_options()("model", po::value<std::string>(&f.model),
                     "config.json or a folder holding one")(
      "topology", po::value<std::string>(&f.topo_name)->default_value("rack"), kTopologyHelp)(
      "chip", po::value<std::string>(&f.chip_name)->default_value("lpu-v1"), "chip preset")(
      "spare-nodes", po::value<int>(&f.spare_nodes)->default_value(1),
      "spare nodes per rack, kept free (rack and racks:N)")(
      "dtype", po::value<std::string>(&f.dtype_name)->default_value("int8"),
      "fp32, fp16, bf16, int8, fp8")("batch", po::value<int64_t>(&f.batch)->default_value(1),
                                     "sequences per micro-batch")(
      "context", po::value<int64_t>(&f.context)->default_value(4096), "KV context per sequence")(
      "prompt-len", po::value<int64_t>(&f.prompt_len)->default_value(0),
      "prompt length for time to first token (0 = --context)")(
      "objective", po::value<std::string>(&f.objective_name)->default_value("latency"),
      "latency or throughput")("tp", po::value<int>(&f.tp)->default_value(0),
                               "fixed tensor-parallel degree (0 = search)")(
      "pp", po::value<int>(&f.pp)->default_value(0), "fixed number of stages (0 = search)")(
      "output,o", po::value<std::string>(&f.out),
      "write the plan to this file: Cap'n Proto (proto/plan.capnp), or JSON if it ends in .json")(
      "cost-params", po::value<std::string>(&f.cost_params),
      "a cost-parameters file (lockstep calibrate -o): the figures to plan with instead of the "
      "chip's built-in ones; the plan records them")(
      "svg", po::value<std::string>(&f.svg),
      "also draw the plan on its system as SVG: racks, nodes, chips coloured by stage, TP groups, "
      "spares, down chips, stage-to-stage routes")(
      "explain",
      "also show where each stage's time goes (compute, weight stream, memory, link transfer, "
      "hop latency, fixed latency) and the best plan at each TP degree and why it lost")(
      "target-tokens-per-s", po::value<double>(&f.target),
      "capacity planning: find the smallest node/rack/system of --chip reaching this aggregate "
      "rate (replaces --topology)");
  po::positional_options_description pos;
  po::variables_map vm;
  if (!ParseOrHelp(
          args,
          "lockstep plan --model CONFIG [--topology T] [--dtype D] [--batch B] "
          "[--context C] [--prompt-len P] [--objective latency|throughput] [--tp N] "
          "[--pp N] [--cost-params FILE] [--explain] [-o PLAN] [--svg PICTURE.svg] [--json]",
          opts, pos, vm)) {
    return std::nullopt;
  }
  if (f.model.empty()) throw UsageError("--model is required (see: lockstep plan --help)");
  std::optional<topology::ChipSpec> chip = topology::ChipPreset(f.chip_name);
  if (!chip) throw UsageError("--chip: unknown preset '" + f.chip_name + "' (valid: lpu-v1)");
  f.chip = *chip;
  std::optional<Dtype> dtype = ParseDtype(f.dtype_name);
  if (!dtype)
    throw UsageError("--dtype: unknown type '" + f.dtype_name +
                     "' (valid: fp32, fp16, bf16, int8, fp8)");
  f.dtype = *dtype;
  std::optional<partition::Objective> objective = partition::ParseObjective(f.objective_name);
  if (!objective)
    throw UsageError("--objective: must be latency or throughput, got '" + f.objective_name + "'");
  f.objective = *objective;
  if (f.batch < 1 || f.context < 1 || f.prompt_len < 0 || f.tp < 0 || f.pp < 0) {
    throw UsageError("--batch and --context must be >= 1; --prompt-len, --tp, --pp >= 0");
  }
  f.target_given = vm.count("target-tokens-per-s") > 0;
  f.explain = vm.count("explain") > 0;
  return f;
}

// What the plan was made from, and the plan.
struct PlanInputs {
  partition::ModelSpec spec;
  partition::PlanOptions options;
  topology::Topology topo;
  partition::Plan plan;
};

// Loads the model (and the cost-parameters file) and makes the plan: on --topology, or on the
// smallest system reaching --target-tokens-per-s.
PlanInputs MakePlanInputs(const PlanFlags& f, Context& ctx) {
  PlanInputs in;
  in.spec = partition::LoadModelSpec(f.model);
  if (f.target_given && !(f.target > 0)) {
    throw UsageError("--target-tokens-per-s must be > 0");
  }
  partition::PlanOptions& options = in.options;
  options.objective = f.objective;
  options.workload.batch = f.batch;
  options.workload.context = f.context;
  options.workload.dtype = f.dtype;
  options.prompt_len = f.prompt_len;
  if (f.tp > 0) options.tp = f.tp;
  if (f.pp > 0) options.pp = f.pp;
  // Figures from a file, read against the chip they apply to (it supplies the figures the
  // file leaves out).
  auto use_cost_params = [&](const topology::ChipSpec& c) {
    if (f.cost_params.empty()) return;
    const partition::CostParams p = partition::LoadCostParams(f.cost_params, c);
    options.chip_params = p.chip;
    options.link_params = p.link;
    options.runtime_params = p.runtime;
    options.cost_params_name = p.name;
  };
  if (f.target > 0) {
    use_cost_params(f.chip);
    topology::RackShape shape;
    shape.spare_nodes = f.spare_nodes;
    partition::CapacityResult found =
        partition::PlanCapacity(in.spec, f.chip, shape, options, f.target);
    ctx.log->info(
        "smallest system reaching {} tokens/s: {}", f.target,
        found.racks == 0 ? std::string("one node") : std::to_string(found.racks) + " rack(s)");
    in.topo = std::move(found.topology);
    in.plan = std::move(found.plan);
  } else {
    in.topo = ResolveTopology(f.topo_name, f.chip, f.spare_nodes);
    for (const topology::Chip& c : in.topo.chips()) {
      if (!c.spare && !c.down) {
        use_cost_params(in.topo.spec_of(c.id));
        break;
      }
    }
    in.plan = partition::MakePlan(in.spec, in.topo, options);
  }
  return in;
}

// --explain: where each stage's time goes, and the best plan at each TP degree.
struct Explanation {
  std::vector<partition::Alternative> alternatives;
  std::vector<partition::TimeShares> shares;
  partition::TimeShares token_shares;
};

Explanation Explain(const PlanInputs& in) {
  Explanation e;
  e.alternatives = partition::ExplainAlternatives(in.spec, in.topo, in.options, in.plan);
  for (const partition::StagePlan& s : in.plan.stages) {
    e.shares.push_back(partition::StageShares(in.plan, s.index));
    e.token_shares += e.shares.back();
  }
  return e;
}

// --json: the plan's JSON, with --explain its time shares and alternatives too.
void PrintPlanJson(const std::string& json, const std::optional<Explanation>& explained) {
  if (!explained) {
    std::cout << json;
    return;
  }
  auto shares_json = [](const partition::TimeShares& t) {
    return nlohmann::json{{"total_ns", t.total()},
                          {"compute_ns", t.compute_ns},
                          {"weight_stream_ns", t.weight_stream_ns},
                          {"memory_ns", t.memory_ns},
                          {"link_transfer_ns", t.link_transfer_ns},
                          {"link_latency_ns", t.link_latency_ns},
                          {"fixed_ns", t.fixed_ns}};
  };
  nlohmann::json j = nlohmann::json::parse(json);
  nlohmann::json stage_shares = nlohmann::json::array();
  for (size_t i = 0; i < explained->shares.size(); ++i) {
    nlohmann::json x = shares_json(explained->shares[i]);
    x["stage"] = i;
    stage_shares.push_back(x);
  }
  j["time_shares"] = {{"stages", stage_shares}, {"token", shares_json(explained->token_shares)}};
  nlohmann::json alts = nlohmann::json::array();
  for (const partition::Alternative& a : explained->alternatives) {
    nlohmann::json x = {{"tp", a.tp}, {"fits", a.fits}, {"why", a.why}};
    if (a.fits) {
      x["chips_used"] = a.chips_used;
      x["stages"] = a.stages;
      x["token_latency_ns"] = a.predicted.token_latency_ns;
      x["tokens_per_s_per_user"] = a.predicted.tokens_per_s_per_user;
      x["tokens_per_s"] = a.predicted.tokens_per_s;
    }
    alts.push_back(x);
  }
  j["alternatives"] = alts;
  PrintJson(j);
}

// The plan as text: a line per stage, the prediction and the lower bounds.
void PrintPlanText(const partition::Plan& plan) {
  const partition::Prediction& p = plan.predicted;
  std::cout << plan.model << " on " << plan.topology << " (" << plan.chips_used << " of "
            << plan.chips_available << " " << plan.chip << " chips), "
            << DtypeName(plan.workload.dtype) << ", batch " << plan.workload.batch << ", context "
            << plan.workload.context << ", objective " << ObjectiveName(plan.objective) << "\n\n"
            << "stage  layers      TP  chips        MiB/chip  headroom  step us  send us\n";
  for (const partition::StagePlan& s : plan.stages) {
    std::ostringstream layers;
    // Inclusive layer numbers; E = embedding, H = LM head and sampling.
    std::string parts;
    if (s.has_embedding) parts = "E";
    if (s.end_layer > s.first_layer) {
      parts += (parts.empty() ? "" : "+") + std::to_string(s.first_layer);
      if (s.end_layer - s.first_layer > 1) parts += "-" + std::to_string(s.end_layer - 1);
    }
    if (s.has_head) parts += (parts.empty() ? "" : "+") + std::string("H");
    layers << parts;
    std::ostringstream chips;
    chips << s.chips.front() << "-" << s.chips.back();
    std::cout << std::left << std::setw(7) << s.index << std::setw(12) << layers.str()
              << std::setw(4) << s.tp << std::setw(13) << chips.str() << std::right << std::setw(8)
              << Mib(s.memory_bytes) << std::setw(10) << Mib(s.headroom_bytes) << std::setw(9)
              << Us(s.stage_ns) << std::setw(9) << Us(s.send_ns) << "\n";
  }
  std::cout << "\npredicted: " << Us(p.token_latency_ns) << " us per token, "
            << std::setprecision(4) << p.tokens_per_s_per_user << " tokens/s per user, "
            << p.tokens_per_s << " tokens/s total; time to first token "
            << Us(p.time_to_first_token_ns) << " us (prompt " << plan.prompt_len
            << "); bottleneck stage " << p.bottleneck_stage << "\n"
            << "lower bounds: compute " << Us(p.compute_bound_ns) << " us, weight stream "
            << Us(p.weight_stream_bound_ns) << " us, links " << Us(p.link_bound_ns) << " us\n";
}

// --explain as text: the time shares per stage and per token, then the alternatives.
void PrintExplanationText(const Explanation& e) {
  auto pct = [](int64_t part, int64_t total) {
    std::ostringstream o;
    o << std::fixed << std::setprecision(1) << (total > 0 ? 100.0 * part / total : 0.0) << "%";
    return o.str();
  };
  std::cout << "\nwhere the time goes (each stage's decode step and send; fixed = pipeline "
               "fills, layer sync, op and collective-step overheads):\n"
            << "stage  total us   compute   weights    memory  link xfer      hops     fixed\n";
  auto row = [&](const std::string& name, const partition::TimeShares& t) {
    const int64_t total = t.total();
    std::cout << std::left << std::setw(7) << name << std::right << std::setw(8) << Us(total)
              << std::setw(10) << pct(t.compute_ns, total) << std::setw(10)
              << pct(t.weight_stream_ns, total) << std::setw(10) << pct(t.memory_ns, total)
              << std::setw(11) << pct(t.link_transfer_ns, total) << std::setw(10)
              << pct(t.link_latency_ns, total) << std::setw(10) << pct(t.fixed_ns, total) << "\n";
  };
  for (size_t i = 0; i < e.shares.size(); ++i) row(std::to_string(i), e.shares[i]);
  row("token", e.token_shares);
  if (e.alternatives.empty()) return;
  std::cout << "\nalternatives (every stage at one TP degree):\n";
  for (const partition::Alternative& a : e.alternatives) {
    std::cout << "  TP " << std::left << std::setw(5) << a.tp << std::right;
    if (a.fits) {
      std::cout << std::setw(5) << a.chips_used << " chips " << std::setw(4) << a.stages
                << " stages " << std::setw(9) << Us(a.predicted.token_latency_ns) << " us/token "
                << std::setw(10) << std::setprecision(4) << a.predicted.tokens_per_s
                << " tokens/s  ";
    }
    std::cout << a.why << "\n";
  }
}

int Plan(const std::vector<std::string>& args, Context& ctx) {
  const std::optional<PlanFlags> parsed = ParsePlanFlags(args);
  if (!parsed) return 0;
  const PlanFlags& f = *parsed;
  const PlanInputs in = MakePlanInputs(f, ctx);
  const std::string json = partition::PlanToJson(in.plan);
  if (!f.out.empty()) {
    partition::WritePlanFile(f.out,
                             in.plan);  // .json: the JSON below; else proto/plan.capnp binary
    ctx.log->info("wrote {}", f.out);
  }
  if (!f.svg.empty()) {
    WriteFileAtomically(f.svg, viz::PlanSvg(in.plan));
    ctx.log->info("wrote {}", f.svg);
  }
  std::optional<Explanation> explained;
  if (f.explain) explained = Explain(in);
  if (ctx.json) {
    PrintPlanJson(json, explained);
    return 0;
  }
  PrintPlanText(in.plan);
  if (explained) PrintExplanationText(*explained);
  return 0;
}

}  // namespace

CommandGroup PlanCommand() {
  return {"plan", "split a model into pipeline stages x TP groups and predict its speed", Plan};
}

}  // namespace lockstep::cli
