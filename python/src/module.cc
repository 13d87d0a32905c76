// `import lockstep`: the planner from Python. model_info(), plan() and simulate() return what
// `lockstep model show --json`, `lockstep plan --json` and `lockstep simulate --json` print, as
// Python dicts (plan() as a Plan, which reads like that dict and can be simulated or saved).
// Errors: lockstep.Error (a ValueError) with the command's one-line message.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "lockstep/common/error.h"
#include "lockstep/partition/model_spec.h"
#include "lockstep/partition/plan.h"
#include "lockstep/schedule/schedule.h"
#include "lockstep/schedule/simulate.h"
#include "lockstep/topology/generators.h"
#include "lockstep/topology/named.h"
#include "lockstep/viz/report_json.h"

namespace py = pybind11;

namespace lockstep::python {
namespace {

py::object ToPython(const std::string& json_text) {
  return py::module_::import("json").attr("loads")(json_text);
}

Dtype DtypeArg(const std::string& name) {
  std::optional<Dtype> d = ParseDtype(name);
  if (!d)
    throw InvalidInput("dtype: unknown type '" + name + "' (valid: fp32, fp16, bf16, int8, fp8)");
  return *d;
}

// A plan as `lockstep plan` makes it; reads like its --json dict.
struct PyPlan {
  partition::Plan plan;
  py::object dict;
};

py::dict ModelInfo(const std::string& path, std::optional<std::string> dtype, int64_t context) {
  if (context < 0) throw InvalidInput("context must be >= 0, got " + std::to_string(context));
  const partition::ModelSpec m = partition::LoadModelSpec(path);
  const Dtype d = dtype ? DtypeArg(*dtype) : m.torch_dtype.value_or(Dtype::kFp16);
  return ToPython(viz::ModelJson(m, d, context).dump());
}

PyPlan MakePlan(const std::string& model, const std::string& topology, const std::string& dtype,
                const std::string& objective, int64_t batch, int64_t context, int64_t prompt_len,
                int tp, int pp, const std::string& chip_name, int spare_nodes) {
  std::optional<topology::ChipSpec> chip = topology::ChipPreset(chip_name);
  if (!chip) throw InvalidInput("chip: unknown preset '" + chip_name + "' (valid: lpu-v1)");
  std::optional<partition::Objective> o = partition::ParseObjective(objective);
  if (!o) throw InvalidInput("objective: must be latency or throughput, got '" + objective + "'");
  if (batch < 1 || context < 1 || prompt_len < 0 || tp < 0 || pp < 0) {
    throw InvalidInput("batch and context must be >= 1; prompt_len, tp, pp >= 0");
  }
  const partition::ModelSpec spec = partition::LoadModelSpec(model);
  partition::PlanOptions options;
  options.objective = *o;
  options.workload.batch = batch;
  options.workload.context = context;
  options.workload.dtype = DtypeArg(dtype);
  options.prompt_len = prompt_len;
  if (tp > 0) options.tp = tp;
  if (pp > 0) options.pp = pp;
  const topology::Topology topo = topology::NamedTopology(topology, *chip, spare_nodes);
  PyPlan p;
  p.plan = partition::MakePlan(spec, topo, options);
  p.dict = ToPython(partition::PlanToJson(p.plan));
  return p;
}

PyPlan LoadPlan(const std::string& path) {
  PyPlan p;
  p.plan = partition::ReadPlanFile(path);
  p.dict = ToPython(partition::PlanToJson(p.plan));
  return p;
}

py::dict Simulate(const PyPlan& p, int64_t tokens, int64_t sequences, bool prefill,
                  int64_t prompt_len, double jitter, uint64_t seed) {
  if (tokens < 1 || sequences < 0 || prompt_len < 0) {
    throw InvalidInput("tokens must be >= 1, sequences and prompt_len >= 0");
  }
  if (jitter < 0 || jitter > 10) throw InvalidInput("jitter must be in [0, 10]");
  const partition::Plan& plan = p.plan;
  const topology::Topology& topo = partition::PlanTopology(plan);
  const std::vector<std::string> problems = partition::VerifyPlan(plan, plan.spec, topo);
  if (!problems.empty()) {
    throw InvalidInput("not a valid plan for its own model and topology: " + problems.front());
  }
  schedule::ScheduleOptions so;
  so.tokens = tokens;
  so.sequences = sequences;
  so.prefill = prefill;
  so.prompt_len = prompt_len;
  const schedule::GlobalSchedule s = schedule::Compile(plan, so);
  schedule::SimulateOptions sim;
  sim.jitter = jitter;
  sim.seed = seed;
  sim.link_params = plan.link_params;
  const schedule::SimResult r = schedule::Simulate(s, topo, sim);
  if (!r.ok) throw Error(ErrorCode::kDisconnected, "simulation failed: " + r.failure);
  return ToPython(viz::SimulateJson(plan, s, r).dump());
}

}  // namespace
}  // namespace lockstep::python

PYBIND11_MODULE(lockstep, m) {
  using namespace lockstep::python;
  m.doc() =
      "Lockstep's planner from Python: model_info(), plan() and simulate() return the fields of "
      "`lockstep model show --json`, `lockstep plan --json` and `lockstep simulate --json`.";
  static py::exception<lockstep::Error> error(m, "Error", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr e) {
    try {
      if (e) std::rethrow_exception(e);
    } catch (const lockstep::Error& x) {  // topology::NameError (a misspelt name) among them
      error(x.what());
    }
  });

  py::class_<PyPlan>(m, "Plan",
                     "A plan (lockstep plan): reads like the dict `lockstep plan --json` prints.")
      .def("to_dict", [](const PyPlan& p) { return p.dict.attr("copy")(); })
      .def("__getitem__", [](const PyPlan& p, py::object key) { return p.dict[key]; })
      .def("__contains__", [](const PyPlan& p, py::object key) { return p.dict.contains(key); })
      .def("keys", [](const PyPlan& p) { return p.dict.attr("keys")(); })
      .def(
          "save",
          [](const PyPlan& p, const std::string& path) {
            lockstep::partition::WritePlanFile(path, p.plan);
          },
          py::arg("path"), "write the plan file (binary, or JSON if the path ends in .json)")
      .def("__repr__", [](const PyPlan& p) {
        return "<lockstep.Plan " + p.plan.model + " on " + p.plan.topology + ", " +
               std::to_string(p.plan.chips_used) + " chips>";
      });

  m.def("model_info", &ModelInfo, py::arg("path"), py::arg("dtype") = py::none(),
        py::arg("context") = 0,
        "A Hugging Face config.json (or a folder holding one): `lockstep model show --json`.");
  m.def("plan", &MakePlan, py::arg("model"), py::kw_only(), py::arg("topology") = "rack",
        py::arg("dtype") = "int8", py::arg("objective") = "latency", py::arg("batch") = 1,
        py::arg("context") = 4096, py::arg("prompt_len") = 0, py::arg("tp") = 0, py::arg("pp") = 0,
        py::arg("chip") = "lpu-v1", py::arg("spare_nodes") = 1,
        "Partition a model over a topology (file, node, rack or racks:N): `lockstep plan`.");
  m.def("load_plan", &LoadPlan, py::arg("path"), "Read a plan file written by `lockstep plan -o`.");
  m.def("simulate", &Simulate, py::arg("plan"), py::kw_only(), py::arg("tokens") = 1,
        py::arg("sequences") = 0, py::arg("prefill") = false, py::arg("prompt_len") = 0,
        py::arg("jitter") = 0.0, py::arg("seed") = 1,
        "Compile the plan's schedule and run it in virtual time: `lockstep simulate --json`.");
}
