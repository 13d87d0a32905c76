#include "lockstep/control/codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>
#include <type_traits>

#include "lockstep/partition/plan.h"
#include "lockstep/proto/control.capnp.h"
#include "lockstep/proto/read.h"
#include "lockstep/schedule/link_table_capnp.h"
#include "lockstep/schedule/program_codec.h"

namespace lockstep::control {

const char* MessageName(const ControlMessage& message) {
  static constexpr const char* kNames[] = {"register",
                                           "assignment",
                                           "shard chunk",
                                           "shard done",
                                           "ready",
                                           "step",
                                           "step result",
                                           "ping",
                                           "heartbeat",
                                           "error",
                                           "shutdown",
                                           "submit",
                                           "accepted",
                                           "token",
                                           "done",
                                           "stop server",
                                           "link check",
                                           "link check result",
                                           "flight recorder request",
                                           "flight recorder",
                                           "run start",
                                           "admit",
                                           "close log",
                                           "refused",
                                           "tokens",
                                           "run done"};
  return kNames[message.index()];
}

namespace {

using proto::ControlMessage;
using schedule::InstrKind;

Error Bad(const std::string& context, const std::string& why) {
  return Error(ErrorCode::kProtocol, context + ": malformed control message: " + why);
}

// --- encoders, one per kind ---

void Put(proto::HostSummary::Builder b, const HostInfo& h) {
  b.setSource(h.source);
  b.setPackages(h.packages);
  b.setNumaNodes(h.numa_nodes);
  b.setCores(h.cores);
  b.setPus(h.pus);
  auto pus = b.initCorePus(static_cast<unsigned>(h.core_pus.size()));
  for (size_t i = 0; i < h.core_pus.size(); ++i) pus.set(static_cast<unsigned>(i), h.core_pus[i]);
}

void Put(proto::Sampling::Builder b, const model::SamplingOptions& s) {
  b.setTemperature(s.temperature);
  b.setTopP(s.top_p);
  b.setSeed(s.seed);
}

void Encode(ControlMessage::Builder m, const RegisterMsg& r) {
  auto b = m.initRegister();
  b.setPid(r.pid);
  b.setHostname(r.hostname);
  Put(b.initHost(), r.host);
  b.setTag(r.tag);
  b.setChip(r.chip);
}

void PutLinks(capnp::List<proto::Link>::Builder out, const std::vector<transport::LinkSpec>& in) {
  for (size_t i = 0; i < in.size(); ++i) {
    auto l = out[static_cast<unsigned>(i)];
    l.setAChip(in[i].a.chip);
    l.setAPort(in[i].a.port);
    l.setBChip(in[i].b.chip);
    l.setBPort(in[i].b.port);
    l.setLatencyNs(in[i].latency_ns);
    l.setBytesPerSecond(in[i].bytes_per_second);
  }
}

std::vector<transport::LinkSpec> GetLinks(capnp::List<proto::Link>::Reader in) {
  std::vector<transport::LinkSpec> out;
  for (auto l : in) {
    transport::LinkSpec spec;
    spec.a = {l.getAChip(), l.getAPort()};
    spec.b = {l.getBChip(), l.getBPort()};
    spec.latency_ns = l.getLatencyNs();
    spec.bytes_per_second = l.getBytesPerSecond();
    out.push_back(spec);
  }
  return out;
}

void PutTransport(proto::TransportOptions::Builder t, const TransportSettings& s) {
  t.setBackend(s.backend);
  t.setQueueCapacity(s.queue_capacity);
  t.setMaxPayloadBytes(s.max_payload_bytes);
  t.setIpcDir(s.ipc_dir);
  t.setTcpBasePort(s.tcp_base_port);
  auto hosts = t.initTcpHosts(static_cast<unsigned>(s.tcp_hosts.size()));
  for (size_t i = 0; i < s.tcp_hosts.size(); ++i) {
    hosts[static_cast<unsigned>(i)].setChip(s.tcp_hosts[i].first);
    hosts[static_cast<unsigned>(i)].setHost(s.tcp_hosts[i].second);
  }
  t.setConnectTimeoutMs(s.connect_timeout_ms);
  t.setStepTimeoutMs(s.step_timeout_ms);
  t.setCurve(s.curve);
  t.setCurvePublicKey(s.curve_public_key);
  t.setLinkChecksums(static_cast<uint8_t>(s.checksums));
}

TransportSettings GetTransport(proto::TransportOptions::Reader t) {
  TransportSettings s;
  s.backend = t.getBackend();
  s.queue_capacity = t.getQueueCapacity();
  s.max_payload_bytes = t.getMaxPayloadBytes();
  s.ipc_dir = t.getIpcDir();
  s.tcp_base_port = t.getTcpBasePort();
  for (auto h : t.getTcpHosts()) s.tcp_hosts.emplace_back(h.getChip(), h.getHost());
  s.connect_timeout_ms = t.getConnectTimeoutMs();
  s.step_timeout_ms = t.getStepTimeoutMs();
  s.curve = t.getCurve();
  s.curve_public_key = t.getCurvePublicKey();
  const uint8_t checksums = t.getLinkChecksums();
  if (checksums > static_cast<uint8_t>(transport::LinkChecksums::kOff)) {
    throw Error(ErrorCode::kProtocol, "transport options with link checksums code " +
                                          std::to_string(checksums) +
                                          " (valid: 0 auto, 1 on, 2 off)");
  }
  s.checksums = static_cast<transport::LinkChecksums>(checksums);
  return s;
}

void Encode(ControlMessage::Builder m, const AssignmentMsg& a) {
  auto b = m.initAssignment();
  b.setChip(a.chip);
  b.setStage(a.stage);
  b.setRank(a.rank);
  b.setScheduleId(a.schedule_id);
  PutLinks(b.initLinks(static_cast<unsigned>(a.links.size())), a.links);
  PutTransport(b.initTransport(), a.transport);
  const std::vector<std::byte> program = schedule::SerializeProgram(a.program);
  b.setProgram(kj::arrayPtr(reinterpret_cast<const kj::byte*>(program.data()), program.size()));
  const std::string spec = partition::SerializeModelSpec(a.spec);
  b.setSpec(kj::arrayPtr(reinterpret_cast<const kj::byte*>(spec.data()), spec.size()));
  b.setShardBytes(a.shard_bytes);
  b.setShardChunks(a.shard_chunks);
  auto cpus = b.initCpus(static_cast<unsigned>(a.cpus.size()));
  for (size_t i = 0; i < a.cpus.size(); ++i) cpus.set(static_cast<unsigned>(i), a.cpus[i]);
  b.setSlots(a.slots);
  b.setMaxPositions(a.max_positions);
  b.setReuseShard(a.reuse_shard);
  b.setShardSource(a.shard_source);
  auto group = b.initGroup(static_cast<unsigned>(a.group.size()));
  for (size_t i = 0; i < a.group.size(); ++i) group.set(static_cast<unsigned>(i), a.group[i]);
  schedule::PutLinkTables(a.incoming, b.initIncoming(static_cast<unsigned>(a.incoming.size())));
  b.setRepeatNs(a.repeat_ns);
  b.setDecodeMakespanNs(a.decode_makespan_ns);
  b.setLookahead(a.lookahead);
  b.setLinkEfficiency(a.link_params.link_efficiency);
  b.setHopLatencyNs(a.link_params.hop_latency_ns);
  auto prefill = b.initPrefill(static_cast<unsigned>(a.prefill.size()));
  for (size_t i = 0; i < a.prefill.size(); ++i) {
    auto o = prefill[static_cast<unsigned>(i)];
    o.setBucket(a.prefill[i].bucket);
    o.setChunkTokens(a.prefill[i].chunk_tokens);
    o.setMakespanNs(a.prefill[i].makespan_ns);
    const std::vector<std::byte> p = schedule::SerializeProgram(a.prefill[i].program);
    o.setProgram(kj::arrayPtr(reinterpret_cast<const kj::byte*>(p.data()), p.size()));
  }
}

void Put(proto::Admission::Builder b, const Admission& a) {
  b.setNumber(a.number);
  b.setStep(a.step);
  b.setRequest(a.request);
  auto tokens = b.initTokens(static_cast<unsigned>(a.tokens.size()));
  for (size_t i = 0; i < a.tokens.size(); ++i) tokens.set(static_cast<unsigned>(i), a.tokens[i]);
  b.setGenerated(a.generated);
  b.setMaxNew(a.max_new);
  Put(b.initSampling(), a.sampling);
  b.setLogits(a.logits);
}

void Encode(ControlMessage::Builder m, const RunStartMsg& r) {
  auto b = m.initRunStart();
  auto log = b.initAdmissions(static_cast<unsigned>(r.admissions.size()));
  for (size_t i = 0; i < r.admissions.size(); ++i)
    Put(log[static_cast<unsigned>(i)], r.admissions[i]);
  b.setClosed(r.closed);
  b.setPace(r.pace);
  b.setEpochNs(r.epoch_ns);
  b.setVirtualTime(r.virtual_time);
}

void Encode(ControlMessage::Builder m, const AdmitMsg& a) { Put(m.initAdmit(), a.admission); }

void Encode(ControlMessage::Builder m, const CloseLogMsg&) { m.setCloseLog(); }

void Encode(ControlMessage::Builder m, const RefusedMsg& r) {
  auto b = m.initRefused();
  b.setChip(r.chip);
  b.setNumber(r.number);
  b.setDecided(r.decided);
  b.setReason(r.reason);
}

void Encode(ControlMessage::Builder m, const TokensMsg& t) {
  auto b = m.initTokens();
  b.setChip(t.chip);
  b.setStep(t.step);
  auto tokens = b.initTokens(static_cast<unsigned>(t.tokens.size()));
  for (size_t i = 0; i < t.tokens.size(); ++i) {
    const SampledToken& x = t.tokens[i];
    auto o = tokens[static_cast<unsigned>(i)];
    o.setSlot(x.slot);
    o.setRequest(x.request);
    o.setIndex(x.index);
    o.setToken(x.token);
    o.setLast(x.last);
    auto logits = o.initLogits(static_cast<unsigned>(x.logits.size()));
    for (size_t k = 0; k < x.logits.size(); ++k) logits.set(static_cast<unsigned>(k), x.logits[k]);
  }
}

void Encode(ControlMessage::Builder m, const RunDoneMsg& d) {
  auto b = m.initRunDone();
  b.setChip(d.chip);
  b.setSteps(d.steps);
  b.setPrefillSteps(d.prefill_steps);
  b.setTokens(d.tokens);
  auto buckets = b.initLagBuckets(static_cast<unsigned>(d.lag_buckets.size()));
  for (size_t i = 0; i < d.lag_buckets.size(); ++i)
    buckets.set(static_cast<unsigned>(i), d.lag_buckets[i]);
  b.setLagMaxNs(d.lag_max_ns);
}

void Encode(ControlMessage::Builder m, const ShardChunkMsg& c) {
  auto b = m.initShardChunk();
  b.setIndex(c.index);
  b.setOffset(c.offset);
  b.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(c.data.data()), c.data.size()));
  b.setCrc32c(c.crc32c);
}

void Encode(ControlMessage::Builder m, const ShardDoneMsg& d) {
  auto b = m.initShardDone();
  b.setTotalBytes(d.total_bytes);
  b.setCrc32c(d.crc32c);
}

void Encode(ControlMessage::Builder m, const ReadyMsg& r) { m.initReady().setChip(r.chip); }

void Encode(ControlMessage::Builder m, const StepMsg& s) {
  auto b = m.initStep();
  b.setIndex(s.step.index);
  auto work = b.initWork(static_cast<unsigned>(s.step.work.size()));
  for (size_t i = 0; i < s.step.work.size(); ++i) {
    const SlotWork& w = s.step.work[i];
    auto o = work[static_cast<unsigned>(i)];
    o.setSlot(w.slot);
    o.setRequest(w.request);
    o.setPosition(w.position);
    auto tokens = o.initTokens(static_cast<unsigned>(w.tokens.size()));
    for (size_t t = 0; t < w.tokens.size(); ++t) tokens.set(static_cast<unsigned>(t), w.tokens[t]);
    o.setReset(w.reset);
    Put(o.initSampling(), w.sampling);
    o.setSampleIndex(w.sample_index);
    o.setLogits(w.logits);
  }
}

void Encode(ControlMessage::Builder m, const StepResultMsg& s) {
  auto b = m.initStepResult();
  b.setChip(s.chip);
  b.setIndex(s.index);
  b.setComputeNs(s.compute_ns);
  b.setComputeWallNs(s.times.of(InstrKind::kCompute));
  b.setReduceNs(s.times.of(InstrKind::kReduce));
  b.setSendNs(s.times.of(InstrKind::kSend));
  b.setRecvNs(s.times.of(InstrKind::kRecv));
  b.setForwardNs(s.times.of(InstrKind::kForward));
  b.setStepNs(s.times.step_ns);
  auto sent = b.initSent(static_cast<unsigned>(s.sent.size()));
  for (size_t i = 0; i < s.sent.size(); ++i) {
    auto o = sent[static_cast<unsigned>(i)];
    o.setLink(s.sent[i].link);
    o.setPeer(s.sent[i].peer);
    o.setBytes(s.sent[i].bytes);
  }
  auto results = b.initResults(static_cast<unsigned>(s.results.size()));
  for (size_t i = 0; i < s.results.size(); ++i) {
    const SlotResult& r = s.results[i];
    auto o = results[static_cast<unsigned>(i)];
    o.setSlot(r.slot);
    o.setRequest(r.request);
    o.setToken(r.token);
    auto logits = o.initLogits(static_cast<unsigned>(r.logits.size()));
    for (size_t k = 0; k < r.logits.size(); ++k) logits.set(static_cast<unsigned>(k), r.logits[k]);
  }
}

void Encode(ControlMessage::Builder m, const PingMsg&) { m.setPing(); }

void Put(proto::FlightEntry::Builder b, const FlightEntry& e) {
  b.setStep(e.step);
  b.setOp(e.op);
  b.setKind(static_cast<uint8_t>(e.kind));
  b.setLink(e.link);
  b.setPort(e.port);
  b.setPeer(e.peer);
  b.setBytes(e.bytes);
  b.setStartNs(e.start_ns);
  b.setEndNs(e.end_ns);
}

void Put(proto::Progress::Builder b, const ChipProgress& p) {
  b.setStep(p.step);
  b.setRunning(p.running);
  b.setLastCompletedStep(p.last_completed_step);
  Put(b.initCurrent(), p.current);
  b.setSinceStepStartNs(p.since_step_start_ns);
}

void Encode(ControlMessage::Builder m, const HeartbeatMsg& h) {
  auto b = m.initHeartbeat();
  b.setChip(h.chip);
  b.setLastStep(h.last_step);
  Put(b.initProgress(), h.progress);
}

void Encode(ControlMessage::Builder m, const FlightRecorderRequestMsg&) {
  m.setFlightRecorderRequest();
}

void Encode(ControlMessage::Builder m, const FlightRecorderMsg& r) {
  auto b = m.initFlightRecorder();
  b.setChip(r.chip);
  Put(b.initProgress(), r.progress);
  auto entries = b.initEntries(static_cast<unsigned>(r.entries.size()));
  for (size_t i = 0; i < r.entries.size(); ++i) {
    Put(entries[static_cast<unsigned>(i)], r.entries[i]);
  }
}

void Encode(ControlMessage::Builder m, const ErrorMsg& e) {
  auto b = m.initError();
  b.setChip(e.chip);
  b.setCode(static_cast<uint8_t>(e.code));
  b.setMessage(e.message);
}

void Encode(ControlMessage::Builder m, const ShutdownMsg&) { m.setShutdown(); }

void Encode(ControlMessage::Builder m, const SubmitMsg& r) {
  auto b = m.initSubmit();
  b.setId(r.id);
  auto prompt = b.initPrompt(static_cast<unsigned>(r.prompt.size()));
  for (size_t i = 0; i < r.prompt.size(); ++i) prompt.set(static_cast<unsigned>(i), r.prompt[i]);
  b.setMaxNew(r.max_new);
  Put(b.initSampling(), r.sampling);
}

void Encode(ControlMessage::Builder m, const AcceptedMsg& a) { m.setAccepted(a.id); }

void Encode(ControlMessage::Builder m, const TokenMsg& t) {
  auto b = m.initToken();
  b.setId(t.id);
  b.setToken(t.token);
  b.setIndex(t.index);
}

void Encode(ControlMessage::Builder m, const DoneMsg& d) {
  auto b = m.initDone();
  b.setId(d.id);
  auto tokens = b.initTokens(static_cast<unsigned>(d.tokens.size()));
  for (size_t i = 0; i < d.tokens.size(); ++i) tokens.set(static_cast<unsigned>(i), d.tokens[i]);
  b.setCode(static_cast<uint8_t>(d.code));
  b.setError(d.error);
}

void Encode(ControlMessage::Builder m, const StopServerMsg&) { m.setStopServer(); }
void Encode(ControlMessage::Builder m, const LinkCheckMsg& c) {
  auto b = m.initLinkCheck();
  b.setChip(c.chip);
  PutLinks(b.initLinks(static_cast<unsigned>(c.links.size())), c.links);
  PutTransport(b.initTransport(), c.transport);
}

void Encode(ControlMessage::Builder m, const LinkCheckResultMsg& r) {
  auto b = m.initLinkCheckResult();
  b.setChip(r.chip);
  b.setOk(r.ok);
  b.setMessage(r.message);
  b.setLinks(r.links);
}

// --- decoders ---

HostInfo Get(proto::HostSummary::Reader r) {
  HostInfo h{r.getSource(), r.getPackages(), r.getNumaNodes(), r.getCores(), r.getPus(), {}};
  for (int32_t pu : r.getCorePus()) h.core_pus.push_back(pu);
  return h;
}

template <typename Enum>
Enum CheckedEnum(uint8_t value, uint8_t count, const std::string& context, const char* what) {
  if (value >= count) {
    throw Bad(context, std::string(what) + " " + std::to_string(value) + " out of range");
  }
  return static_cast<Enum>(value);
}

model::SamplingOptions Get(proto::Sampling::Reader r) {
  model::SamplingOptions s;
  s.temperature = r.getTemperature();
  s.top_p = r.getTopP();
  s.seed = r.getSeed();
  return s;
}

AssignmentMsg GetAssignment(proto::Assignment::Reader r, const std::string& context) {
  AssignmentMsg a;
  a.chip = r.getChip();
  a.stage = r.getStage();
  a.rank = r.getRank();
  a.schedule_id = r.getScheduleId();
  a.links = GetLinks(r.getLinks());
  a.transport = GetTransport(r.getTransport());
  const auto program = r.getProgram();
  a.program = schedule::ParseProgram(
      {reinterpret_cast<const std::byte*>(program.begin()), program.size()}, context);
  const auto spec = r.getSpec();
  a.spec = partition::ParseModelSpecBytes(
      std::string_view(reinterpret_cast<const char*>(spec.begin()), spec.size()), context);
  a.shard_bytes = r.getShardBytes();
  a.shard_chunks = r.getShardChunks();
  for (int32_t c : r.getCpus()) a.cpus.push_back(c);
  a.slots = r.getSlots();
  a.max_positions = r.getMaxPositions();
  a.reuse_shard = r.getReuseShard();
  a.shard_source = r.getShardSource().cStr();
  for (int32_t chip : r.getGroup()) a.group.push_back(chip);
  a.incoming = schedule::GetLinkTables(r.getIncoming());
  a.repeat_ns = r.getRepeatNs();
  a.decode_makespan_ns = r.getDecodeMakespanNs();
  a.lookahead = r.getLookahead();
  a.link_params.link_efficiency = r.getLinkEfficiency();
  a.link_params.hop_latency_ns = r.getHopLatencyNs();
  for (auto p : r.getPrefill()) {
    AssignmentMsg::Prefill o;
    o.bucket = p.getBucket();
    o.chunk_tokens = p.getChunkTokens();
    o.makespan_ns = p.getMakespanNs();
    const auto bytes = p.getProgram();
    o.program = schedule::ParseProgram(
        {reinterpret_cast<const std::byte*>(bytes.begin()), bytes.size()}, context);
    a.prefill.push_back(std::move(o));
  }
  if (a.slots < 1) throw Bad(context, "assignment with " + std::to_string(a.slots) + " slots");
  if (a.repeat_ns < 0 || a.decode_makespan_ns < 0 || a.lookahead < 1) {
    throw Bad(context, "assignment with a negative time or a lookahead below 1");
  }
  if (!(a.link_params.link_efficiency > 0 && a.link_params.link_efficiency <= 1)) {
    throw Bad(context, "assignment with link efficiency " +
                           std::to_string(a.link_params.link_efficiency) + " (valid: (0, 1])");
  }
  return a;
}

Admission GetAdmission(proto::Admission::Reader r, const std::string& context) {
  Admission a;
  a.number = r.getNumber();
  a.step = r.getStep();
  a.request = r.getRequest();
  for (int32_t t : r.getTokens()) a.tokens.push_back(t);
  a.generated = r.getGenerated();
  a.max_new = r.getMaxNew();
  a.sampling = Get(r.getSampling());
  a.logits = r.getLogits();
  if (a.number < 0 || a.generated < 0) {
    throw Bad(context,
              "admission " + std::to_string(a.number) + " with a negative number or count");
  }
  return a;
}

TokensMsg GetTokens(proto::Tokens::Reader r) {
  TokensMsg t{r.getChip(), r.getStep(), {}};
  for (auto x : r.getTokens()) {
    SampledToken o;
    o.slot = x.getSlot();
    o.request = x.getRequest();
    o.index = x.getIndex();
    o.token = x.getToken();
    o.last = x.getLast();
    o.logits.reserve(x.getLogits().size());
    for (float v : x.getLogits()) o.logits.push_back(v);
    t.tokens.push_back(std::move(o));
  }
  return t;
}

RunDoneMsg GetRunDone(proto::RunDone::Reader r, const std::string& context) {
  RunDoneMsg d{r.getChip(), r.getSteps(), r.getPrefillSteps(), r.getTokens(), {}, r.getLagMaxNs()};
  for (int64_t n : r.getLagBuckets()) {
    if (n < 0) throw Bad(context, "run done with a negative lag count");
    d.lag_buckets.push_back(n);
  }
  return d;
}

Step GetStep(proto::Step::Reader r) {
  Step step;
  step.index = r.getIndex();
  for (auto w : r.getWork()) {
    SlotWork o;
    o.slot = w.getSlot();
    o.request = w.getRequest();
    o.position = w.getPosition();
    for (int32_t t : w.getTokens()) o.tokens.push_back(t);
    o.reset = w.getReset();
    o.sampling = Get(w.getSampling());
    o.sample_index = w.getSampleIndex();
    o.logits = w.getLogits();
    step.work.push_back(std::move(o));
  }
  return step;
}

StepResultMsg GetStepResult(proto::StepResult::Reader r, const std::string& context) {
  StepResultMsg s;
  s.chip = r.getChip();
  s.index = r.getIndex();
  s.compute_ns = r.getComputeNs();
  const auto time = [&](int64_t ns, std::string_view what) {
    if (ns < 0) throw Bad(context, "step result with a negative " + std::string(what) + " time");
    return ns;
  };
  const auto set = [&](InstrKind kind, int64_t ns) {
    s.times.by_kind_ns[static_cast<size_t>(kind)] = time(ns, schedule::InstrKindName(kind));
  };
  set(InstrKind::kCompute, r.getComputeWallNs());
  set(InstrKind::kReduce, r.getReduceNs());
  set(InstrKind::kSend, r.getSendNs());
  set(InstrKind::kRecv, r.getRecvNs());
  set(InstrKind::kForward, r.getForwardNs());
  s.times.step_ns = time(r.getStepNs(), "step");
  for (auto x : r.getSent()) {
    if (x.getLink() < 0 || x.getPeer() < 0 || x.getBytes() < 0) {
      throw Bad(context, "step result with link bytes of link " + std::to_string(x.getLink()) +
                             " to chip " + std::to_string(x.getPeer()) + ": " +
                             std::to_string(x.getBytes()) + " (want link, peer, bytes >= 0)");
    }
    s.sent.push_back({x.getLink(), x.getPeer(), x.getBytes()});
  }
  for (auto x : r.getResults()) {
    SlotResult o;
    o.slot = x.getSlot();
    o.request = x.getRequest();
    o.token = x.getToken();
    o.logits.reserve(x.getLogits().size());
    for (float v : x.getLogits()) o.logits.push_back(v);
    s.results.push_back(std::move(o));
  }
  return s;
}

LinkCheckMsg GetLinkCheck(proto::LinkCheck::Reader r) {
  LinkCheckMsg c;
  c.chip = r.getChip();
  c.links = GetLinks(r.getLinks());
  c.transport = GetTransport(r.getTransport());
  return c;
}

FlightEntry GetEntry(proto::FlightEntry::Reader r, const std::string& context) {
  FlightEntry e;
  e.step = r.getStep();
  e.op = r.getOp();
  e.kind = CheckedEnum<schedule::InstrKind>(r.getKind(), 5, context, "flight entry kind");
  e.link = r.getLink();
  e.port = r.getPort();
  e.peer = r.getPeer();
  e.bytes = r.getBytes();
  e.start_ns = r.getStartNs();
  e.end_ns = r.getEndNs();
  return e;
}

ChipProgress GetProgress(proto::Progress::Reader r, const std::string& context) {
  ChipProgress p;
  p.step = r.getStep();
  p.running = r.getRunning();
  p.last_completed_step = r.getLastCompletedStep();
  p.current = GetEntry(r.getCurrent(), context);
  p.since_step_start_ns = r.getSinceStepStartNs();
  return p;
}

control::ControlMessage DecodeReader(ControlMessage::Reader m, const std::string& context) {
  if (m.getVersion() != kControlVersion) {
    throw Bad(context, "version " + std::to_string(m.getVersion()) + " (this build speaks " +
                           std::to_string(kControlVersion) + ")");
  }
  switch (m.which()) {
    case ControlMessage::REGISTER: {
      auto r = m.getRegister();
      return RegisterMsg{r.getPid(), r.getHostname(), Get(r.getHost()), r.getTag(), r.getChip()};
    }
    case ControlMessage::ASSIGNMENT:
      return GetAssignment(m.getAssignment(), context);
    case ControlMessage::SHARD_CHUNK: {
      auto r = m.getShardChunk();
      auto data = r.getData();
      ShardChunkMsg c{r.getIndex(), r.getOffset(), {}, r.getCrc32c()};
      const auto* bytes = reinterpret_cast<const std::byte*>(data.begin());
      c.data.assign(bytes, bytes + data.size());  // one copy, no zero fill first
      return c;
    }
    case ControlMessage::SHARD_DONE:
      return ShardDoneMsg{m.getShardDone().getTotalBytes(), m.getShardDone().getCrc32c()};
    case ControlMessage::READY:
      return ReadyMsg{m.getReady().getChip()};
    case ControlMessage::STEP:
      return StepMsg{GetStep(m.getStep())};
    case ControlMessage::STEP_RESULT:
      return GetStepResult(m.getStepResult(), context);
    case ControlMessage::PING:
      return PingMsg{};
    case ControlMessage::HEARTBEAT:
      return HeartbeatMsg{m.getHeartbeat().getChip(), m.getHeartbeat().getLastStep(),
                          GetProgress(m.getHeartbeat().getProgress(), context)};
    case ControlMessage::FLIGHT_RECORDER_REQUEST:
      return FlightRecorderRequestMsg{};
    case ControlMessage::FLIGHT_RECORDER: {
      auto r = m.getFlightRecorder();
      FlightRecorderMsg out{r.getChip(), GetProgress(r.getProgress(), context), {}};
      for (auto e : r.getEntries()) out.entries.push_back(GetEntry(e, context));
      return out;
    }
    case ControlMessage::ERROR: {
      auto r = m.getError();
      return ErrorMsg{
          r.getChip(),
          CheckedEnum<ErrorCode>(r.getCode(), static_cast<uint8_t>(ErrorCode::kInternal) + 1,
                                 context, "error code"),
          r.getMessage()};
    }
    case ControlMessage::SHUTDOWN:
      return ShutdownMsg{};
    case ControlMessage::SUBMIT: {
      auto r = m.getSubmit();
      SubmitMsg out{r.getId(), {}, r.getMaxNew(), Get(r.getSampling())};
      for (int32_t t : r.getPrompt()) out.prompt.push_back(t);
      return out;
    }
    case ControlMessage::ACCEPTED:
      return AcceptedMsg{m.getAccepted()};
    case ControlMessage::TOKEN:
      return TokenMsg{m.getToken().getId(), m.getToken().getToken(), m.getToken().getIndex()};
    case ControlMessage::DONE: {
      auto r = m.getDone();
      DoneMsg out{
          r.getId(),
          {},
          CheckedEnum<ErrorCode>(r.getCode(), static_cast<uint8_t>(ErrorCode::kInternal) + 1,
                                 context, "error code"),
          r.getError()};
      for (int32_t t : r.getTokens()) out.tokens.push_back(t);
      return out;
    }
    case ControlMessage::STOP_SERVER:
      return StopServerMsg{};
    case ControlMessage::LINK_CHECK:
      return GetLinkCheck(m.getLinkCheck());
    case ControlMessage::LINK_CHECK_RESULT: {
      auto r = m.getLinkCheckResult();
      return LinkCheckResultMsg{r.getChip(), r.getOk(), r.getMessage(), r.getLinks()};
    }
    case ControlMessage::RUN_START: {
      auto r = m.getRunStart();
      RunStartMsg out;
      for (auto a : r.getAdmissions()) out.admissions.push_back(GetAdmission(a, context));
      out.closed = r.getClosed();
      out.pace = r.getPace();
      out.epoch_ns = r.getEpochNs();
      out.virtual_time = r.getVirtualTime();
      if (out.pace != 0 && !(out.pace >= 1)) throw Bad(context, "run start with pace below 1");
      return out;
    }
    case ControlMessage::ADMIT:
      return AdmitMsg{GetAdmission(m.getAdmit(), context)};
    case ControlMessage::CLOSE_LOG:
      return CloseLogMsg{};
    case ControlMessage::REFUSED: {
      auto r = m.getRefused();
      return RefusedMsg{r.getChip(), r.getNumber(), r.getDecided(), r.getReason()};
    }
    case ControlMessage::TOKENS:
      return GetTokens(m.getTokens());
    case ControlMessage::RUN_DONE:
      return GetRunDone(m.getRunDone(), context);
  }
  throw Bad(context, "unknown message kind " + std::to_string(static_cast<int>(m.which())));
}

}  // namespace

std::vector<std::byte> Encode(const control::ControlMessage& message) {
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<proto::ControlMessage>();
  root.setVersion(kControlVersion);
  std::visit([&](const auto& m) { Encode(root, m); }, message);
  kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();
  std::vector<std::byte> out(bytes.size());
  std::memcpy(out.data(), bytes.begin(), bytes.size());
  return out;
}

control::ControlMessage Decode(const std::byte* data, size_t size, const std::string& context) {
  if (size > kMaxControlBytes) {
    throw Bad(context,
              std::to_string(size) + " bytes (at most " + std::to_string(kMaxControlBytes) + ")");
  }
  // ZeroMQ frames need not be word-aligned: the reader copies those (an aligned one, the usual
  // case, is read in place). A control message's decoder reads some lists twice: 4x its size.
  return proto::ReadMessage<proto::ControlMessage>(
      std::span<const std::byte>(data, size),
      [&](const std::string& why) { return Bad(context, why); },
      [&](proto::ControlMessage::Reader r) { return DecodeReader(r, context); },
      {.traversal_factor = 4});
}

}  // namespace lockstep::control
