// `lockstep plan`: split a model into pipeline stages x tensor-parallel groups on a topology and
// predict its latency and throughput.
#include <iomanip>
#include <iostream>
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

int Plan(const std::vector<std::string>& args, Context& ctx) {
  po::options_description opts("options");
  std::string model, topo_name = "rack", chip_name = "lpu-v1", dtype_name = "int8",
                     objective_name = "latency", out, svg, cost_params;
  int64_t batch = 1, context = 4096, prompt_len = 0;
  int tp = 0, pp = 0, spare_nodes = 1;
  double target = 0;
  opts.add_options()("model", po::value<std::string>(&model),
                     "config.json or a folder holding one")(
      "topology", po::value<std::string>(&topo_name)->default_value("rack"), kTopologyHelp)(
      "chip", po::value<std::string>(&chip_name)->default_value("lpu-v1"), "chip preset")(
      "spare-nodes", po::value<int>(&spare_nodes)->default_value(1),
      "spare nodes per rack, kept free (rack and racks:N)")(
      "dtype", po::value<std::string>(&dtype_name)->default_value("int8"),
      "fp32, fp16, bf16, int8, fp8")("batch", po::value<int64_t>(&batch)->default_value(1),
                                     "sequences per micro-batch")(
      "context", po::value<int64_t>(&context)->default_value(4096), "KV context per sequence")(
      "prompt-len", po::value<int64_t>(&prompt_len)->default_value(0),
      "prompt length for time to first token (0 = --context)")(
      "objective", po::value<std::string>(&objective_name)->default_value("latency"),
      "latency or throughput")("tp", po::value<int>(&tp)->default_value(0),
                               "fixed tensor-parallel degree (0 = search)")(
      "pp", po::value<int>(&pp)->default_value(0), "fixed number of stages (0 = search)")(
      "output,o", po::value<std::string>(&out),
      "write the plan to this file: Cap'n Proto (proto/plan.capnp), or JSON if it ends in .json")(
      "cost-params", po::value<std::string>(&cost_params),
      "a cost-parameters file (lockstep calibrate -o): the figures to plan with instead of the "
      "chip's built-in ones; the plan records them")(
      "svg", po::value<std::string>(&svg),
      "also draw the plan on its system as SVG: racks, nodes, chips coloured by stage, TP groups, "
      "spares, down chips, stage-to-stage routes")(
      "explain",
      "also show where each stage's time goes (compute, weight stream, memory, link transfer, "
      "hop latency, fixed latency) and the best plan at each TP degree and why it lost")(
      "target-tokens-per-s", po::value<double>(&target),
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
    return 0;
  }
  if (model.empty()) throw UsageError("--model is required (see: lockstep plan --help)");
  std::optional<topology::ChipSpec> chip = topology::ChipPreset(chip_name);
  if (!chip) throw UsageError("--chip: unknown preset '" + chip_name + "' (valid: lpu-v1)");
  std::optional<Dtype> dtype = ParseDtype(dtype_name);
  if (!dtype)
    throw UsageError("--dtype: unknown type '" + dtype_name +
                     "' (valid: fp32, fp16, bf16, int8, fp8)");
  std::optional<partition::Objective> objective = partition::ParseObjective(objective_name);
  if (!objective)
    throw UsageError("--objective: must be latency or throughput, got '" + objective_name + "'");
  if (batch < 1 || context < 1 || prompt_len < 0 || tp < 0 || pp < 0) {
    throw UsageError("--batch and --context must be >= 1; --prompt-len, --tp, --pp >= 0");
  }

  const partition::ModelSpec spec = partition::LoadModelSpec(model);
  if (vm.count("target-tokens-per-s") && !(target > 0)) {
    throw UsageError("--target-tokens-per-s must be > 0");
  }
  partition::PlanOptions options;
  options.objective = *objective;
  options.workload.batch = batch;
  options.workload.context = context;
  options.workload.dtype = *dtype;
  options.prompt_len = prompt_len;
  if (tp > 0) options.tp = tp;
  if (pp > 0) options.pp = pp;
  // Figures from a file, read against the chip they apply to (it supplies the figures the
  // file leaves out).
  auto use_cost_params = [&](const topology::ChipSpec& c) {
    if (cost_params.empty()) return;
    const partition::CostParams p = partition::LoadCostParams(cost_params, c);
    options.chip_params = p.chip;
    options.link_params = p.link;
    options.runtime_params = p.runtime;
    options.cost_params_name = p.name;
  };
  topology::Topology topo;
  partition::Plan plan;
  if (target > 0) {
    use_cost_params(*chip);
    topology::RackShape shape;
    shape.spare_nodes = spare_nodes;
    partition::CapacityResult found = partition::PlanCapacity(spec, *chip, shape, options, target);
    ctx.log->info(
        "smallest system reaching {} tokens/s: {}", target,
        found.racks == 0 ? std::string("one node") : std::to_string(found.racks) + " rack(s)");
    topo = std::move(found.topology);
    plan = std::move(found.plan);
  } else {
    topo = ResolveTopology(topo_name, *chip, spare_nodes);
    for (const topology::Chip& c : topo.chips()) {
      if (!c.spare && !c.down) {
        use_cost_params(topo.spec_of(c.id));
        break;
      }
    }
    plan = partition::MakePlan(spec, topo, options);
  }
  const std::string json = partition::PlanToJson(plan);
  if (!out.empty()) {
    partition::WritePlanFile(out, plan);  // .json: the JSON below; else proto/plan.capnp binary
    ctx.log->info("wrote {}", out);
  }
  if (!svg.empty()) {
    WriteFileAtomically(svg, viz::PlanSvg(plan));
    ctx.log->info("wrote {}", svg);
  }
  const bool explain = vm.count("explain") > 0;
  std::vector<partition::Alternative> alternatives;
  std::vector<partition::TimeShares> shares;
  partition::TimeShares token_shares;
  if (explain) {
    alternatives = partition::ExplainAlternatives(spec, topo, options, plan);
    for (const partition::StagePlan& s : plan.stages) {
      shares.push_back(partition::StageShares(plan, s.index));
      token_shares += shares.back();
    }
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
  if (ctx.json) {
    if (!explain) {
      std::cout << json;
      return 0;
    }
    nlohmann::json j = nlohmann::json::parse(json);
    nlohmann::json stage_shares = nlohmann::json::array();
    for (size_t i = 0; i < shares.size(); ++i) {
      nlohmann::json x = shares_json(shares[i]);
      x["stage"] = i;
      stage_shares.push_back(x);
    }
    j["time_shares"] = {{"stages", stage_shares}, {"token", shares_json(token_shares)}};
    nlohmann::json alts = nlohmann::json::array();
    for (const partition::Alternative& a : alternatives) {
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
    return 0;
  }
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
  if (explain) {
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
    for (size_t i = 0; i < shares.size(); ++i) row(std::to_string(i), shares[i]);
    row("token", token_shares);
  }
  if (!alternatives.empty()) {
    std::cout << "\nalternatives (every stage at one TP degree):\n";
    for (const partition::Alternative& a : alternatives) {
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
  return 0;
}

}  // namespace

CommandGroup PlanCommand() {
  return {"plan", "split a model into pipeline stages x TP groups and predict its speed", Plan};
}

}  // namespace lockstep::cli
