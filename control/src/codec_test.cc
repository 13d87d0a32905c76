#include "lockstep/control/codec.h"

#include <gtest/gtest.h>

#include <cstring>

#include "lockstep/control/settings.h"
#include "lockstep/transport/crc32c.h"

namespace lockstep::control {
namespace {

ControlMessage RoundTrip(const ControlMessage& m) {
  const std::vector<std::byte> bytes = Encode(m);
  return Decode(bytes.data(), bytes.size(), "test");
}

template <typename T>
T RoundTripAs(const ControlMessage& m) {
  ControlMessage back = RoundTrip(m);
  EXPECT_TRUE(std::holds_alternative<T>(back)) << MessageName(back);
  return std::get<T>(back);
}

schedule::ChipProgram SampleProgram() {
  schedule::ChipProgram p;
  p.chip = 5;
  p.stage = 1;
  p.rank = 2;
  p.resident_bytes = 123456789;
  schedule::Instruction a;
  a.kind = schedule::InstrKind::kCompute;
  a.op = partition::OpKind::kEmbedding;
  a.start_ns = 10;
  a.end_ns = 30;
  a.duration_ns = 20;
  schedule::Instruction b;
  b.kind = schedule::InstrKind::kSend;
  b.tag = schedule::Tag::kActivation;
  b.token = -1;
  b.sequence = 3;
  b.stage = 1;
  b.layer = 7;
  b.bytes = 4096;
  b.link = 11;
  b.peer = 6;
  b.msg = 99;
  b.in_link = 12;
  b.in_peer = 4;
  b.in_msg = 98;
  b.deps = {0};
  p.instructions = {a, b};
  return p;
}

TEST(Codec, RegisterRoundTrips) {
  RegisterMsg r{4242, "host-a", {"this machine", 1, 1, 2, 4, {0, 2}}, "/tmp/run", 7};
  const RegisterMsg back = RoundTripAs<RegisterMsg>(r);
  EXPECT_EQ(back.pid, 4242);
  EXPECT_EQ(back.hostname, "host-a");
  EXPECT_EQ(back.host, r.host);
  EXPECT_EQ(back.tag, "/tmp/run");
  EXPECT_EQ(back.chip, 7);
}

TEST(Codec, AssignmentCarriesProgramSpecLinksAndTransport) {
  AssignmentMsg a;
  a.chip = 5;
  a.stage = 1;
  a.rank = 2;
  a.schedule_id = 0xfeedbeefcafeull;
  transport::LinkSpec link;
  link.a = {5, 3};
  link.b = {6, 3};
  link.latency_ns = 600;
  link.bytes_per_second = 1000;
  a.links = {link};
  a.transport.backend = "tcp";
  a.transport.ipc_dir = "/tmp/x";
  a.transport.tcp_base_port = 31000;
  a.transport.tcp_hosts = {{5, "10.0.0.1"}};
  a.transport.step_timeout_ms = 1234;
  a.transport.curve = true;
  a.transport.curve_public_key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
  a.transport.checksums = transport::LinkChecksums::kOff;
  a.program = SampleProgram();
  a.spec.name = "tiny";
  a.spec.num_layers = 2;
  a.spec.hidden_size = 64;
  a.spec.intermediate_size = 128;
  a.spec.num_heads = 4;
  a.spec.num_kv_heads = 2;
  a.spec.head_dim = 16;
  a.spec.vocab_size = 100;
  a.spec.rope_scaling = partition::RopeScaling{"llama3", 8.0, 1.0, 4.0, 8192};
  a.spec.torch_dtype = Dtype::kBf16;
  a.shard_bytes = 1000;
  a.shard_chunks = 3;
  a.cpus = {1};
  a.slots = 4;
  a.max_positions = 256;
  a.group = {4, 5};
  a.incoming = {{3, 6, 5, {{10, 20, 98}, {30, 40, 99}}}};
  a.reuse_shard = true;
  a.shard_source = R"({"checkpoint":"/m.safetensors","rank":2})";
  const AssignmentMsg back = RoundTripAs<AssignmentMsg>(a);
  EXPECT_TRUE(back.reuse_shard);
  EXPECT_EQ(back.shard_source, a.shard_source);
  a.reuse_shard = false;
  EXPECT_FALSE(RoundTripAs<AssignmentMsg>(a).reuse_shard);
  EXPECT_EQ(back.chip, 5u);
  EXPECT_EQ(back.stage, 1);
  EXPECT_EQ(back.rank, 2);
  EXPECT_EQ(back.schedule_id, a.schedule_id);
  ASSERT_EQ(back.links.size(), 1u);
  EXPECT_EQ(back.links[0].a, link.a);
  EXPECT_EQ(back.links[0].b, link.b);
  EXPECT_EQ(back.links[0].latency_ns, 600);
  EXPECT_EQ(back.links[0].bytes_per_second, 1000);
  EXPECT_EQ(back.transport.backend, "tcp");
  EXPECT_EQ(back.transport.tcp_base_port, 31000);
  EXPECT_EQ(back.transport.tcp_hosts, a.transport.tcp_hosts);
  EXPECT_EQ(back.transport.step_timeout_ms, 1234);
  EXPECT_TRUE(back.transport.curve);
  EXPECT_EQ(back.transport.curve_public_key, a.transport.curve_public_key);
  EXPECT_EQ(back.transport.checksums, transport::LinkChecksums::kOff);
  EXPECT_EQ(transport::ChecksumsPayloads(TransportOptionsFor(back.transport)), false);
  EXPECT_EQ(back.spec, a.spec);
  EXPECT_EQ(back.shard_chunks, 3u);
  EXPECT_EQ(back.cpus, std::vector<int>{1});
  EXPECT_EQ(back.slots, 4);
  EXPECT_EQ(back.max_positions, 256);
  EXPECT_EQ(back.group, a.group);
  schedule::GlobalSchedule sent_links, received_links;
  sent_links.links = a.incoming;
  received_links.links = back.incoming;
  EXPECT_EQ(schedule::ScheduleToJson(received_links), schedule::ScheduleToJson(sent_links));
  ASSERT_EQ(back.program.instructions.size(), 2u);
  // The whole program, field by field: the schedule is the contract.
  schedule::GlobalSchedule sent, received;
  sent.programs = {a.program};
  received.programs = {back.program};
  EXPECT_EQ(schedule::ScheduleToJson(received), schedule::ScheduleToJson(sent));
}

TEST(Codec, ShardChunkAndDigest) {
  ShardChunkMsg c{2, 2048, {std::byte{1}, std::byte{2}, std::byte{255}}, 0};
  c.crc32c = transport::Crc32c(c.data);
  const ShardChunkMsg back = RoundTripAs<ShardChunkMsg>(c);
  EXPECT_EQ(back.index, 2u);
  EXPECT_EQ(back.offset, 2048u);
  EXPECT_EQ(back.data, c.data);
  EXPECT_EQ(back.crc32c, c.crc32c);
  const ShardDoneMsg done = RoundTripAs<ShardDoneMsg>(ShardDoneMsg{3, 77});
  EXPECT_EQ(done.total_bytes, 3u);
  EXPECT_EQ(done.crc32c, 77u);
}

TEST(Codec, StepAndResults) {
  Step step;
  step.index = 17;
  SlotWork w;
  w.slot = 1;
  w.request = 9;
  w.position = 3;
  w.tokens = {4, 5, 6};
  w.reset = true;
  w.sampling = {0.7, 0.9, 42};
  w.sample_index = 2;
  w.logits = false;
  step.work = {w, SlotWork{}};
  const StepMsg back = RoundTripAs<StepMsg>(StepMsg{step});
  EXPECT_EQ(back.step.index, 17);
  ASSERT_EQ(back.step.work.size(), 2u);
  EXPECT_TRUE(back.step.work[1].logits);  // the default: ask for the logits
  const SlotWork& b = back.step.work[0];
  EXPECT_EQ(b.slot, 1);
  EXPECT_EQ(b.request, 9u);
  EXPECT_EQ(b.position, 3);
  EXPECT_EQ(b.tokens, w.tokens);
  EXPECT_TRUE(b.reset);
  EXPECT_EQ(b.sampling.temperature, 0.7);
  EXPECT_EQ(b.sampling.top_p, 0.9);
  EXPECT_EQ(b.sampling.seed, 42u);
  EXPECT_EQ(b.sample_index, 2);
  EXPECT_FALSE(b.logits);

  // Logits travel bit for bit (including values a text format would round).
  StepResultMsg r{3, 17, {{1, 9, 200, {1.0f / 3.0f, -0.0f, 1e-38f}}}, 1234567};
  for (size_t k = 0; k < StepTimes::kKinds; ++k) r.times.by_kind_ns[k] = 1000 * (k + 1);
  r.times.step_ns = 99999;
  r.sent = {{4, 7, 8192}, {9, 2, 0}, {11, 5, int64_t{1} << 40}};
  const StepResultMsg rb = RoundTripAs<StepResultMsg>(r);
  EXPECT_EQ(rb.chip, 3u);
  EXPECT_EQ(rb.index, 17);
  EXPECT_EQ(rb.compute_ns, 1234567);
  EXPECT_EQ(rb.times, r.times);
  EXPECT_EQ(rb.sent, r.sent);
  ASSERT_EQ(rb.results.size(), 1u);
  EXPECT_EQ(rb.results[0].token, 200);
  EXPECT_EQ(std::memcmp(rb.results[0].logits.data(), r.results[0].logits.data(), 3 * sizeof(float)),
            0);
}

TEST(Codec, SmallMessages) {
  EXPECT_TRUE(std::holds_alternative<PingMsg>(RoundTrip(PingMsg{})));
  EXPECT_TRUE(std::holds_alternative<ShutdownMsg>(RoundTrip(ShutdownMsg{})));
  EXPECT_EQ(RoundTripAs<ReadyMsg>(ReadyMsg{12}).chip, 12u);
  const HeartbeatMsg h = RoundTripAs<HeartbeatMsg>(HeartbeatMsg{4, 31, {}});
  EXPECT_EQ(h.chip, 4);
  EXPECT_EQ(h.last_step, 31);
  const ErrorMsg e = RoundTripAs<ErrorMsg>(ErrorMsg{2, ErrorCode::kDisconnected, "link down"});
  EXPECT_EQ(e.chip, 2);
  EXPECT_EQ(e.code, ErrorCode::kDisconnected);
  EXPECT_EQ(e.message, "link down");
}

TEST(Codec, FlightRecorderAndProgress) {
  FlightEntry recv{12, 37, schedule::InstrKind::kRecv, 3, 2, 4, 4096, 1500, -1};
  FlightEntry done{12, 36, schedule::InstrKind::kCompute, -1, -1, -1, 0, 900, 1400};
  ChipProgress p{12, true, 11, recv, 2'000'000'000};
  const HeartbeatMsg h = RoundTripAs<HeartbeatMsg>(HeartbeatMsg{5, 11, p});
  EXPECT_EQ(h.progress, p);
  // Defaults survive too (a worker before its first step).
  EXPECT_EQ(RoundTripAs<HeartbeatMsg>(HeartbeatMsg{5, -1, {}}).progress, ChipProgress{});
  EXPECT_TRUE(
      std::holds_alternative<FlightRecorderRequestMsg>(RoundTrip(FlightRecorderRequestMsg{})));
  const FlightRecorderMsg r = RoundTripAs<FlightRecorderMsg>(FlightRecorderMsg{5, p, {done, recv}});
  EXPECT_EQ(r.chip, 5);
  EXPECT_EQ(r.progress, p);
  ASSERT_EQ(r.entries.size(), 2u);
  EXPECT_EQ(r.entries[0], done);
  EXPECT_EQ(r.entries[1], recv);
}

TEST(Codec, GarbageIsAProtocolErrorNamingTheContext) {
  std::vector<std::byte> bytes = Encode(HeartbeatMsg{1, 2, {}});
  // Truncated, unaligned, empty, random.
  for (size_t size : {size_t{0}, size_t{5}, bytes.size() - 8}) {
    try {
      Decode(bytes.data(), size, "chip 3");
      ADD_FAILURE() << "decoded " << size << " bytes";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kProtocol);
      EXPECT_EQ(std::string(e.what()).rfind("chip 3: malformed control message", 0), 0u)
          << e.what();
    }
  }
  std::vector<std::byte> noise(64);
  for (size_t i = 0; i < noise.size(); ++i) noise[i] = std::byte(static_cast<uint8_t>(i * 37 + 11));
  EXPECT_THROW(Decode(noise.data(), noise.size(), "x"), Error);
}

TEST(Codec, NegativeStepTimesAreRejected) {
  StepResultMsg r{3, 17, {}, 5};
  r.times.by_kind_ns[static_cast<size_t>(schedule::InstrKind::kSend)] = -1;
  std::vector<std::byte> bytes = Encode(r);
  try {
    Decode(bytes.data(), bytes.size(), "chip 3");
    ADD_FAILURE() << "a negative send time was taken";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kProtocol);
    EXPECT_NE(std::string(e.what()).find("chip 3: malformed control message: step result with a "
                                         "negative send time"),
              std::string::npos)
        << e.what();
  }
  r.times = {};
  r.times.step_ns = -5;
  bytes = Encode(r);
  try {
    Decode(bytes.data(), bytes.size(), "chip 3");
    ADD_FAILURE() << "a negative step time was taken";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("a negative step time"), std::string::npos) << e.what();
  }
}

TEST(Codec, NegativeLinkBytesAreRejected) {
  StepResultMsg r{3, 17, {}, 5};
  r.sent = {{4, 7, -1}};
  const std::vector<std::byte> bytes = Encode(r);
  try {
    Decode(bytes.data(), bytes.size(), "chip 3");
    ADD_FAILURE() << "negative link bytes were taken";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kProtocol);
    EXPECT_NE(std::string(e.what()).find("link bytes of link 4 to chip 7: -1"), std::string::npos)
        << e.what();
  }
}

TEST(Codec, ProgramWithAForwardDependencyIsRejected) {
  AssignmentMsg a;
  a.program = SampleProgram();
  a.program.instructions[0].deps = {1};  // depends on a later instruction
  const std::vector<std::byte> bytes = Encode(a);
  EXPECT_THROW(Decode(bytes.data(), bytes.size(), "x"), Error);
}

// The client conversation (client.h / server.h) round-trips field by field.
TEST(Codec, ClientMessagesRoundTrip) {
  const auto Round = [](const ControlMessage& m) {
    const std::vector<std::byte> bytes = Encode(m);
    return Decode(bytes.data(), bytes.size(), "x");
  };
  const SubmitMsg submit{7, {3, 1, 4}, 9, {.temperature = 0.5, .top_p = 0.75, .seed = 11}};
  const ControlMessage s = Round(submit);
  const auto& back = std::get<SubmitMsg>(s);
  EXPECT_EQ(back.id, 7u);
  EXPECT_EQ(back.prompt, submit.prompt);
  EXPECT_EQ(back.max_new, 9);
  EXPECT_EQ(back.sampling.temperature, 0.5);
  EXPECT_EQ(back.sampling.top_p, 0.75);
  EXPECT_EQ(back.sampling.seed, 11u);
  const TokenMsg token{7, 42, 3};
  const auto t = std::get<TokenMsg>(Round(token));
  EXPECT_EQ(t.id, 7u);
  EXPECT_EQ(t.token, 42);
  EXPECT_EQ(t.index, 3);
  const DoneMsg done{7, {5, 6}, ErrorCode::kInvalidInput, "prompt too long"};
  const auto d = std::get<DoneMsg>(Round(done));
  EXPECT_EQ(d.tokens, done.tokens);
  EXPECT_EQ(d.code, ErrorCode::kInvalidInput);
  EXPECT_EQ(d.error, "prompt too long");
  const AcceptedMsg accepted{12};
  EXPECT_EQ(std::get<AcceptedMsg>(Round(accepted)).id, 12u);
  const std::vector<std::byte> stop = Encode(StopServerMsg{});
  EXPECT_TRUE(std::holds_alternative<StopServerMsg>(Decode(stop.data(), stop.size(), "x")));
}

}  // namespace
}  // namespace lockstep::control

namespace lockstep::control {
namespace {

TEST(Codec, LinkCheckRoundTrips) {
  LinkCheckMsg c;
  c.chip = 12;
  c.links.push_back({{12, 3}, {13, 2}, 150, 12'900'000'000});
  c.transport.backend = "tcp";
  c.transport.tcp_base_port = 31000;
  c.transport.tcp_hosts = {{12, "10.0.0.1"}, {13, "10.0.0.2"}};
  c.transport.connect_timeout_ms = 1234;
  const LinkCheckMsg back = RoundTripAs<LinkCheckMsg>(c);
  EXPECT_EQ(back.chip, 12u);
  ASSERT_EQ(back.links.size(), 1u);
  EXPECT_EQ(back.links[0].a, (transport::PortRef{12, 3}));
  EXPECT_EQ(back.links[0].b, (transport::PortRef{13, 2}));
  EXPECT_EQ(back.links[0].latency_ns, 150);
  EXPECT_EQ(back.transport.backend, "tcp");
  EXPECT_EQ(back.transport.tcp_base_port, 31000);
  EXPECT_EQ(back.transport.tcp_hosts, c.transport.tcp_hosts);
  EXPECT_EQ(back.transport.connect_timeout_ms, 1234);
  EXPECT_STREQ(MessageName(back), "link check");

  const LinkCheckResultMsg r = RoundTripAs<LinkCheckResultMsg>(
      LinkCheckResultMsg{12, false, "chip 12 port 3: no answer", 4});
  EXPECT_EQ(r.chip, 12u);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.message, "chip 12 port 3: no answer");
  EXPECT_EQ(r.links, 4u);
}

}  // namespace
}  // namespace lockstep::control

namespace lockstep::control {
namespace {

// A model spec the assignment's codec accepts.
partition::ModelSpec SmallSpec() {
  partition::ModelSpec spec;
  spec.name = "tiny";
  spec.num_layers = 2;
  spec.hidden_size = 64;
  spec.intermediate_size = 128;
  spec.num_heads = 4;
  spec.num_kv_heads = 2;
  spec.head_dim = 16;
  spec.vocab_size = 100;
  return spec;
}

// A self-clocked run's messages: the assignment's programs and time, the admission log, the
// tokens and the run's report, field by field.
TEST(Codec, SelfClockedRunMessagesRoundTrip) {
  AssignmentMsg a;
  a.slots = 2;
  a.spec = SmallSpec();
  a.program = SampleProgram();
  a.repeat_ns = 12345;
  a.decode_makespan_ns = 23456;
  a.lookahead = 2;
  a.prefill = {{16, 4, 777, SampleProgram()}, {32, 8, 999, {}}};
  a.link_params.link_efficiency = 0.75;
  a.link_params.hop_latency_ns = 250;
  const AssignmentMsg back = RoundTripAs<AssignmentMsg>(a);
  EXPECT_EQ(back.link_params.link_efficiency, 0.75);
  EXPECT_EQ(back.link_params.hop_latency_ns, 250);
  EXPECT_EQ(back.repeat_ns, 12345);
  EXPECT_EQ(back.decode_makespan_ns, 23456);
  EXPECT_EQ(back.lookahead, 2);
  ASSERT_EQ(back.prefill.size(), 2u);
  EXPECT_EQ(back.prefill[0].bucket, 16);
  EXPECT_EQ(back.prefill[0].chunk_tokens, 4);
  EXPECT_EQ(back.prefill[0].makespan_ns, 777);
  EXPECT_EQ(back.prefill[0].program, a.prefill[0].program);
  EXPECT_EQ(back.prefill[1].program.instructions.size(), 0u);

  Admission entry{3, 9, 42, {5, 6, 7}, 2, 8, {.temperature = 0.5, .top_p = 0.9, .seed = 11}, true};
  RunStartMsg start{{entry, Admission{4, 9, 43, {1}, 0, 1, {}, false}}, true, 2.5, 123456789, true};
  const RunStartMsg s = RoundTripAs<RunStartMsg>(start);
  EXPECT_EQ(s.admissions, start.admissions);
  EXPECT_TRUE(s.closed);
  EXPECT_EQ(s.pace, 2.5);
  EXPECT_EQ(s.epoch_ns, 123456789);
  EXPECT_TRUE(s.virtual_time);
  EXPECT_EQ(RoundTripAs<AdmitMsg>(AdmitMsg{entry}).admission, entry);
  EXPECT_TRUE(std::holds_alternative<CloseLogMsg>(RoundTrip(CloseLogMsg{})));
  const RefusedMsg r = RoundTripAs<RefusedMsg>(RefusedMsg{4, 3, 17, "names step 9"});
  EXPECT_EQ(r.chip, 4);
  EXPECT_EQ(r.number, 3);
  EXPECT_EQ(r.decided, 17);
  EXPECT_EQ(r.reason, "names step 9");
  TokensMsg t{7, 21, {{1, 42, 3, 99, true, {0.5f, -1.0f}}, {0, 43, 0, 5, false, {}}}};
  const TokensMsg tb = RoundTripAs<TokensMsg>(t);
  EXPECT_EQ(tb.chip, 7);
  EXPECT_EQ(tb.step, 21);
  EXPECT_EQ(tb.tokens, t.tokens);
  const RunDoneMsg d = RoundTripAs<RunDoneMsg>(RunDoneMsg{7, 30, 4, 12, {90, 0, 3}, 5000});
  EXPECT_EQ(d.steps, 30);
  EXPECT_EQ(d.prefill_steps, 4);
  EXPECT_EQ(d.tokens, 12);
  EXPECT_EQ(d.lag_buckets, (std::vector<int64_t>{90, 0, 3}));
  EXPECT_EQ(d.lag_max_ns, 5000);
  EXPECT_STREQ(MessageName(RoundTrip(t)), "tokens");
}

TEST(Codec, SelfClockedRunGarbageIsRefused) {
  RunStartMsg bad_pace;
  bad_pace.pace = 0.5;
  const std::vector<std::byte> b1 = Encode(bad_pace);
  EXPECT_THROW(Decode(b1.data(), b1.size(), "test"), Error);
  const std::vector<std::byte> b2 = Encode(RunDoneMsg{1, 1, 0, 0, {-1}, 0});
  EXPECT_THROW(Decode(b2.data(), b2.size(), "test"), Error);
  AssignmentMsg a;
  a.spec = SmallSpec();
  a.program = SampleProgram();
  const std::vector<std::byte> good = Encode(a);
  EXPECT_NO_THROW(Decode(good.data(), good.size(), "test"));
  a.lookahead = 0;
  const std::vector<std::byte> b3 = Encode(a);
  try {
    Decode(b3.data(), b3.size(), "test");
    ADD_FAILURE() << "a lookahead of 0 was taken";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lookahead below 1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lockstep::control
