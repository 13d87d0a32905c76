// Plan <-> proto/plan.capnp. The only file of the partition library that sees Cap'n Proto.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "lockstep/common/error.h"
#include "lockstep/common/file.h"
#include "lockstep/partition/plan.h"
#include "lockstep/proto/plan.capnp.h"
#include "lockstep/proto/read.h"
#include "lockstep/topology/chip_spec.h"

namespace lockstep::partition {
namespace {

proto::Dtype ToProto(Dtype d) { return static_cast<proto::Dtype>(static_cast<uint16_t>(d)); }

Dtype FromProto(proto::Dtype d, const std::string& source) {
  const auto v = static_cast<uint16_t>(d);
  if (v >= kDtypeCount) {
    throw InvalidInput(source + ": workload.dtype " + std::to_string(v) + " is not a known dtype");
  }
  return static_cast<Dtype>(v);
}

void EncodeSpec(const ModelSpec& m, proto::ModelSpec::Builder b) {
  b.setName(m.name);
  b.setModelType(m.model_type);
  b.setHiddenSize(m.hidden_size);
  b.setIntermediateSize(m.intermediate_size);
  b.setNumLayers(m.num_layers);
  b.setNumHeads(m.num_heads);
  b.setNumKvHeads(m.num_kv_heads);
  b.setHeadDim(m.head_dim);
  b.setVocabSize(m.vocab_size);
  b.setTieWordEmbeddings(m.tie_word_embeddings);
  b.setQkvBias(m.qkv_bias);
  b.setOBias(m.o_bias);
  b.setMlpBias(m.mlp_bias);
  b.setNumExperts(m.num_experts);
  b.setExpertsPerToken(m.experts_per_token);
  b.setRopeTheta(m.rope_theta);
  if (m.rope_scaling) {
    auto r = b.initRopeScaling();
    r.setType(m.rope_scaling->type);
    r.setFactor(m.rope_scaling->factor);
    r.setLowFreqFactor(m.rope_scaling->low_freq_factor);
    r.setHighFreqFactor(m.rope_scaling->high_freq_factor);
    r.setOriginalMaxPositionEmbeddings(m.rope_scaling->original_max_position_embeddings);
  }
  b.setRmsNormEps(m.rms_norm_eps);
  b.setMaxPositionEmbeddings(m.max_position_embeddings);
  b.setSlidingWindow(m.sliding_window);
  b.setHasTorchDtype(m.torch_dtype.has_value());
  if (m.torch_dtype) b.setTorchDtype(ToProto(*m.torch_dtype));
}

ModelSpec DecodeSpec(proto::ModelSpec::Reader r, const std::string& source) {
  ModelSpec m;
  m.name = r.getName();
  m.model_type = r.getModelType();
  m.hidden_size = r.getHiddenSize();
  m.intermediate_size = r.getIntermediateSize();
  m.num_layers = r.getNumLayers();
  m.num_heads = r.getNumHeads();
  m.num_kv_heads = r.getNumKvHeads();
  m.head_dim = r.getHeadDim();
  m.vocab_size = r.getVocabSize();
  m.tie_word_embeddings = r.getTieWordEmbeddings();
  m.qkv_bias = r.getQkvBias();
  m.o_bias = r.getOBias();
  m.mlp_bias = r.getMlpBias();
  m.num_experts = r.getNumExperts();
  m.experts_per_token = r.getExpertsPerToken();
  m.rope_theta = r.getRopeTheta();
  if (r.hasRopeScaling()) {
    auto x = r.getRopeScaling();
    m.rope_scaling =
        RopeScaling{.type = x.getType(),
                    .factor = x.getFactor(),
                    .low_freq_factor = x.getLowFreqFactor(),
                    .high_freq_factor = x.getHighFreqFactor(),
                    .original_max_position_embeddings = x.getOriginalMaxPositionEmbeddings()};
  }
  m.rms_norm_eps = r.getRmsNormEps();
  m.max_position_embeddings = r.getMaxPositionEmbeddings();
  m.sliding_window = r.getSlidingWindow();
  if (r.getHasTorchDtype()) m.torch_dtype = FromProto(r.getTorchDtype(), source);
  if (m.num_layers < 1 || m.hidden_size < 1 || m.num_heads < 1 || m.num_kv_heads < 1 ||
      m.head_dim < 1 || m.vocab_size < 1 || m.intermediate_size < 1 ||
      m.num_heads % m.num_kv_heads != 0) {
    throw InvalidInput(source + ": the model spec is not a valid model (layers " +
                       std::to_string(m.num_layers) + ", hidden " + std::to_string(m.hidden_size) +
                       ", heads " + std::to_string(m.num_heads) + "/" +
                       std::to_string(m.num_kv_heads) + ")");
  }
  return m;
}

void EncodeTopology(const topology::Topology& t, proto::Topology::Builder b) {
  b.setName(t.name());
  auto specs = b.initSpecs(static_cast<unsigned>(t.specs().size()));
  for (unsigned i = 0; i < t.specs().size(); ++i) {
    const topology::ChipSpec& c = t.specs()[i];
    auto o = specs[i];
    o.setName(c.name);
    o.setSramBytes(c.sram_bytes);
    auto peak = o.initPeakOpsPerS(kDtypeCount);
    for (unsigned d = 0; d < static_cast<unsigned>(kDtypeCount); ++d) {
      peak.set(d, c.peak_ops_per_s[d]);
    }
    o.setMemoryBandwidthBytesPerS(c.memory_bandwidth_bytes_per_s);
    o.setClockHz(c.clock_hz);
    o.setPorts(c.ports);
    o.setLinkBandwidthBytesPerS(c.link_bandwidth_bytes_per_s);
    o.setLinkLatencyNs(c.link_latency_ns);
    auto cost = o.initCostParams(static_cast<unsigned>(c.cost_params.size()));
    unsigned k = 0;
    for (const auto& [name, value] : c.cost_params) {
      cost[k].setName(name);
      cost[k].setValue(value);
      ++k;
    }
  }
  auto chips = b.initChips(static_cast<unsigned>(t.chip_count()));
  for (unsigned i = 0; i < chips.size(); ++i) {
    const topology::Chip& c = t.chips()[i];
    auto o = chips[i];
    o.setNode(c.node);
    o.setRack(c.rack);
    o.setSpec(c.spec);
    o.setSpare(c.spare);
    o.setDown(c.down);
  }
  auto links = b.initLinks(static_cast<unsigned>(t.link_count()));
  for (unsigned i = 0; i < links.size(); ++i) {
    const topology::Link& l = t.links()[i];
    auto o = links[i];
    o.setAChip(l.a.chip);
    o.setBChip(l.b.chip);
    o.setAPort(static_cast<uint16_t>(l.a.port));
    o.setBPort(static_cast<uint16_t>(l.b.port));
    o.setDown(l.down);
    o.setBandwidthBytesPerS(l.bandwidth_bytes_per_s);
    o.setLatencyNs(l.latency_ns);
  }
}

// Rebuilt through Topology's own checks (AddSpec, AddChip, AddLink), so a garbled file cannot
// give a structurally invalid topology.
topology::Topology DecodeTopology(proto::Topology::Reader r, const std::string& source) {
  topology::Topology t(r.getName());
  try {
    for (auto o : r.getSpecs()) {
      topology::ChipSpec c;
      c.name = o.getName();
      c.sram_bytes = o.getSramBytes();
      auto peak = o.getPeakOpsPerS();
      if (peak.size() != static_cast<unsigned>(kDtypeCount)) {
        throw InvalidInput("chip spec '" + c.name + "' has " + std::to_string(peak.size()) +
                           " peak rates, expected " + std::to_string(kDtypeCount));
      }
      for (unsigned d = 0; d < peak.size(); ++d) c.peak_ops_per_s[d] = peak[d];
      c.memory_bandwidth_bytes_per_s = o.getMemoryBandwidthBytesPerS();
      c.clock_hz = o.getClockHz();
      c.ports = o.getPorts();
      c.link_bandwidth_bytes_per_s = o.getLinkBandwidthBytesPerS();
      c.link_latency_ns = o.getLinkLatencyNs();
      for (auto f : o.getCostParams()) c.cost_params[f.getName()] = f.getValue();
      const std::string problem = topology::CheckChipSpec(c);
      if (!problem.empty()) throw InvalidInput("chip spec '" + c.name + "': " + problem);
      t.AddSpec(c);
    }
    const int specs = static_cast<int>(t.specs().size());
    for (auto o : r.getChips()) {
      if (o.getSpec() < 0 || o.getSpec() >= specs || o.getNode() < 0 || o.getRack() < 0) {
        throw InvalidInput("chip " + std::to_string(t.chip_count()) + " names spec " +
                           std::to_string(o.getSpec()) + ", node " + std::to_string(o.getNode()) +
                           ", rack " + std::to_string(o.getRack()) + " (" + std::to_string(specs) +
                           " specs)");
      }
      const topology::ChipId id = t.AddChip(o.getNode(), o.getRack(), o.getSpare(), o.getSpec());
      if (o.getDown()) t.SetChipDown(id);
    }
    for (auto o : r.getLinks()) {
      const topology::LinkId id =
          t.AddLink({o.getAChip(), o.getAPort()}, {o.getBChip(), o.getBPort()},
                    o.getBandwidthBytesPerS(), o.getLatencyNs());
      if (o.getDown()) t.SetLinkDown(id);
    }
  } catch (const Error& e) {
    throw InvalidInput(source + ": the plan's topology: " + e.what());
  }
  return t;
}

void Encode(const Plan& plan, proto::Plan::Builder b) {
  b.setModel(plan.model);
  b.setTopology(plan.topology);
  b.setChip(plan.chip);
  b.setObjective(plan.objective == Objective::kLatency ? proto::Plan::Objective::LATENCY
                                                       : proto::Plan::Objective::THROUGHPUT);
  auto w = b.initWorkload();
  w.setPhase(plan.workload.phase == Phase::kDecode ? proto::Workload::Phase::DECODE
                                                   : proto::Workload::Phase::PREFILL);
  w.setBatch(plan.workload.batch);
  w.setContext(plan.workload.context);
  w.setDtype(ToProto(plan.workload.dtype));
  b.setPromptLen(plan.prompt_len);
  b.setChipsAvailable(plan.chips_available);
  b.setChipsUsed(plan.chips_used);
  auto stages = b.initStages(static_cast<unsigned>(plan.stages.size()));
  for (unsigned i = 0; i < plan.stages.size(); ++i) {
    const StagePlan& s = plan.stages[i];
    auto o = stages[i];
    o.setIndex(s.index);
    o.setFirstUnit(s.first_unit);
    o.setEndUnit(s.end_unit);
    o.setHasEmbedding(s.has_embedding);
    o.setHasHead(s.has_head);
    o.setFirstLayer(s.first_layer);
    o.setEndLayer(s.end_layer);
    o.setTp(s.tp);
    auto chips = o.initChips(static_cast<unsigned>(s.chips.size()));
    for (unsigned c = 0; c < s.chips.size(); ++c) chips.set(c, s.chips[c]);
    o.setWeightBytes(s.weight_bytes);
    o.setKvBytes(s.kv_bytes);
    o.setActivationBytes(s.activation_bytes);
    o.setMemoryBytes(s.memory_bytes);
    o.setHeadroomBytes(s.headroom_bytes);
    o.setComputeNs(s.compute_ns);
    o.setCollectiveNs(s.collective_ns);
    o.setStageNs(s.stage_ns);
    o.setSendNs(s.send_ns);
    o.setSendHops(s.send_hops);
    o.setRingChainHops(s.ring_chain_hops);
    o.setGatherHops(s.gather_hops);
    o.setPrefillNs(s.prefill_ns);
  }
  auto p = b.initPredicted();
  const Prediction& q = plan.predicted;
  p.setTokenLatencyNs(q.token_latency_ns);
  p.setTokensPerSPerUser(q.tokens_per_s_per_user);
  p.setTokensPerS(q.tokens_per_s);
  p.setIntervalNs(q.interval_ns);
  p.setMicroBatchesInFlight(q.micro_batches_in_flight);
  p.setTimeToFirstTokenNs(q.time_to_first_token_ns);
  p.setBottleneckStage(q.bottleneck_stage);
  p.setComputeBoundNs(q.compute_bound_ns);
  p.setWeightStreamBoundNs(q.weight_stream_bound_ns);
  p.setLinkBoundNs(q.link_bound_ns);
  EncodeSpec(plan.spec, b.initSpec());
  EncodeTopology(plan.system.topology, b.initSystem());
  auto c = b.initChipParams();
  c.setMatrixEfficiency(plan.chip_params.matrix_efficiency);
  c.setWeightStreamBytesPerS(plan.chip_params.weight_stream_bytes_per_s);
  c.setWeightStreamFraction(plan.chip_params.weight_stream_fraction);
  c.setVectorOpsPerS(plan.chip_params.vector_ops_per_s);
  c.setMemoryEfficiency(plan.chip_params.memory_efficiency);
  c.setOpOverheadNs(plan.chip_params.op_overhead_ns);
  c.setMatrixFillNs(plan.chip_params.matrix_fill_ns);
  c.setVectorFillNs(plan.chip_params.vector_fill_ns);
  c.setLayerSyncNs(plan.chip_params.layer_sync_ns);
  auto l = b.initLinkParams();
  l.setLinkEfficiency(plan.link_params.link_efficiency);
  l.setHopLatencyNs(plan.link_params.hop_latency_ns);
  l.setCollectiveStepOverheadNs(plan.link_params.collective_step_overhead_ns);
  auto rt = b.initRuntimeParams();
  rt.setControlHops(plan.runtime_params.control_hops);
  rt.setControlHopNs(plan.runtime_params.control_hop_ns);
  rt.setStepOverheadNs(plan.runtime_params.step_overhead_ns);
  rt.setCores(plan.runtime_params.cores);
  rt.setSharedWeightStreamBytesPerS(plan.runtime_params.shared_weight_stream_bytes_per_s);
  b.setCostParamsName(plan.cost_params_name);
}

Plan Decode(proto::Plan::Reader r, const std::string& source) {
  if (!r.hasSpec() || !r.hasSystem() || !r.hasChipParams() || !r.hasLinkParams()) {
    throw InvalidInput("plan " + source +
                       " was written without its model/topology; re-run lockstep plan");
  }
  Plan plan;
  plan.model = r.getModel();
  plan.topology = r.getTopology();
  plan.chip = r.getChip();
  switch (r.getObjective()) {
    case proto::Plan::Objective::LATENCY:
      plan.objective = Objective::kLatency;
      break;
    case proto::Plan::Objective::THROUGHPUT:
      plan.objective = Objective::kThroughput;
      break;
    default:
      throw InvalidInput(source + ": unknown objective in the plan");
  }
  auto w = r.getWorkload();
  switch (w.getPhase()) {
    case proto::Workload::Phase::DECODE:
      plan.workload.phase = Phase::kDecode;
      break;
    case proto::Workload::Phase::PREFILL:
      plan.workload.phase = Phase::kPrefill;
      break;
    default:
      throw InvalidInput(source + ": unknown workload phase in the plan");
  }
  plan.workload.batch = w.getBatch();
  plan.workload.context = w.getContext();
  plan.workload.dtype = FromProto(w.getDtype(), source);
  plan.prompt_len = r.getPromptLen();
  plan.chips_available = r.getChipsAvailable();
  plan.chips_used = r.getChipsUsed();
  for (auto o : r.getStages()) {
    StagePlan s;
    s.index = o.getIndex();
    s.first_unit = o.getFirstUnit();
    s.end_unit = o.getEndUnit();
    s.has_embedding = o.getHasEmbedding();
    s.has_head = o.getHasHead();
    s.first_layer = o.getFirstLayer();
    s.end_layer = o.getEndLayer();
    s.tp = o.getTp();
    for (int32_t c : o.getChips()) s.chips.push_back(c);
    s.weight_bytes = o.getWeightBytes();
    s.kv_bytes = o.getKvBytes();
    s.activation_bytes = o.getActivationBytes();
    s.memory_bytes = o.getMemoryBytes();
    s.headroom_bytes = o.getHeadroomBytes();
    s.compute_ns = o.getComputeNs();
    s.collective_ns = o.getCollectiveNs();
    s.stage_ns = o.getStageNs();
    s.send_ns = o.getSendNs();
    s.send_hops = o.getSendHops();
    s.ring_chain_hops = o.getRingChainHops();
    s.gather_hops = std::max(1, o.getGatherHops());
    s.prefill_ns = o.getPrefillNs();
    plan.stages.push_back(std::move(s));
  }
  auto p = r.getPredicted();
  Prediction& q = plan.predicted;
  q.token_latency_ns = p.getTokenLatencyNs();
  q.tokens_per_s_per_user = p.getTokensPerSPerUser();
  q.tokens_per_s = p.getTokensPerS();
  q.interval_ns = p.getIntervalNs();
  q.micro_batches_in_flight = p.getMicroBatchesInFlight();
  q.time_to_first_token_ns = p.getTimeToFirstTokenNs();
  q.bottleneck_stage = p.getBottleneckStage();
  q.compute_bound_ns = p.getComputeBoundNs();
  q.weight_stream_bound_ns = p.getWeightStreamBoundNs();
  q.link_bound_ns = p.getLinkBoundNs();
  plan.spec = DecodeSpec(r.getSpec(), source);
  plan.system.topology = DecodeTopology(r.getSystem(), source);
  auto c = r.getChipParams();
  plan.chip_params.matrix_efficiency = c.getMatrixEfficiency();
  plan.chip_params.weight_stream_bytes_per_s = c.getWeightStreamBytesPerS();
  plan.chip_params.weight_stream_fraction = c.getWeightStreamFraction();
  plan.chip_params.vector_ops_per_s = c.getVectorOpsPerS();
  plan.chip_params.memory_efficiency = c.getMemoryEfficiency();
  plan.chip_params.op_overhead_ns = c.getOpOverheadNs();
  plan.chip_params.matrix_fill_ns = c.getMatrixFillNs();
  plan.chip_params.vector_fill_ns = c.getVectorFillNs();
  plan.chip_params.layer_sync_ns = c.getLayerSyncNs();
  auto l = r.getLinkParams();
  plan.link_params.link_efficiency = l.getLinkEfficiency();
  plan.link_params.hop_latency_ns = l.getHopLatencyNs();
  plan.link_params.collective_step_overhead_ns = l.getCollectiveStepOverheadNs();
  const auto rt = r.getRuntimeParams();
  plan.runtime_params.control_hops = rt.getControlHops();
  plan.runtime_params.control_hop_ns = rt.getControlHopNs();
  plan.runtime_params.step_overhead_ns = rt.getStepOverheadNs();
  plan.runtime_params.cores = rt.getCores();
  plan.runtime_params.shared_weight_stream_bytes_per_s = rt.getSharedWeightStreamBytesPerS();
  plan.cost_params_name = r.getCostParamsName();
  for (const StagePlan& s : plan.stages) {
    for (topology::ChipId chip : s.chips) {
      if (!plan.system.topology.has_chip(chip)) {
        throw InvalidInput(source + ": stage " + std::to_string(s.index) + " names chip " +
                           std::to_string(chip) + ", not in the plan's topology of " +
                           std::to_string(plan.system.topology.chip_count()) + " chips");
      }
    }
  }
  return plan;
}

}  // namespace

namespace {

// One Cap'n Proto message with root Root, filled by `fill`, as flat bytes.
template <typename Root, typename Fill>
std::string WriteMessage(const Fill& fill) {
  capnp::MallocMessageBuilder message;
  fill(message.initRoot<Root>());
  kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  kj::ArrayPtr<const kj::byte> bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

}  // namespace

std::string SerializePlan(const Plan& plan) {
  return WriteMessage<proto::Plan>([&](proto::Plan::Builder b) { Encode(plan, b); });
}

namespace {

// Reads `bytes` as one Cap'n Proto message with root Root and hands the root to `decode`.
// `what` names the expected content in errors ("a Lockstep plan"). The traversal limit is Cap'n
// Proto's default (64 MiB of words), as plans have always been read.
template <typename Root, typename Decode>
auto ReadMessage(std::string_view bytes, const std::string& source, const char* what,
                 const Decode& decode) {
  return proto::ReadMessage<Root>(
      bytes,
      [&](const std::string& why) { return InvalidInput(source + ": not " + what + ": " + why); },
      decode, {.traversal_factor = 0, .traversal_floor = uint64_t{8} << 20});
}

}  // namespace

Plan ParsePlan(std::string_view bytes, const std::string& source) {
  return ReadMessage<proto::Plan>(bytes, source, "a Lockstep plan",
                                  [&](proto::Plan::Reader r) { return Decode(r, source); });
}

std::string SerializeModelSpec(const ModelSpec& spec) {
  return WriteMessage<proto::ModelSpec>([&](proto::ModelSpec::Builder b) { EncodeSpec(spec, b); });
}

ModelSpec ParseModelSpecBytes(std::string_view bytes, const std::string& source) {
  return ReadMessage<proto::ModelSpec>(
      bytes, source, "a model spec",
      [&](proto::ModelSpec::Reader r) { return DecodeSpec(r, source); });
}

void WritePlanFile(const std::string& path, const Plan& plan) {
  const bool json = path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
  WriteFileAtomically(path, json ? PlanToJson(plan) : SerializePlan(plan));
}

Plan ReadPlanFile(const std::string& path) { return ParsePlan(ReadFile(path, "plan file"), path); }

}  // namespace lockstep::partition
