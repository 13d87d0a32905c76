// Plan <-> proto/plan.capnp. The only file of the partition library that sees Cap'n Proto.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "lockstep/common/error.h"
#include "lockstep/partition/plan.h"
#include "lockstep/proto/plan.capnp.h"

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
}

Plan Decode(proto::Plan::Reader r, const std::string& source) {
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
  return plan;
}

}  // namespace

std::string SerializePlan(const Plan& plan) {
  capnp::MallocMessageBuilder message;
  Encode(plan, message.initRoot<proto::Plan>());
  kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  kj::ArrayPtr<const kj::byte> bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

Plan ParsePlan(std::string_view bytes, const std::string& source) {
  if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0) {
    throw InvalidInput(source + ": not a Lockstep plan (" + std::to_string(bytes.size()) +
                       " bytes is not a whole Cap'n Proto message)");
  }
  // Copy into word-aligned memory: the reader requires alignment.
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), bytes.data(), bytes.size());
  try {
    capnp::FlatArrayMessageReader reader(words);
    return Decode(reader.getRoot<proto::Plan>(), source);
  } catch (const kj::Exception& e) {
    std::string what = e.getDescription().cStr();
    for (char& c : what) {
      if (c == '\n') c = ' ';
    }
    throw InvalidInput(source + ": not a Lockstep plan: " + what);
  }
}

void WritePlanFile(const std::string& path, const Plan& plan) {
  const bool json = path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(ErrorCode::kNotFound, path + ": cannot open for writing");
  out << (json ? PlanToJson(plan) : SerializePlan(plan));
  out.flush();
  if (!out) throw Error(ErrorCode::kNotFound, path + ": write failed");
}

Plan ReadPlanFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kNotFound, path + ": no such plan file");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return ParsePlan(bytes.str(), path);
}

}  // namespace lockstep::partition
