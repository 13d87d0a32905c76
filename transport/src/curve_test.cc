// CURVE on the tcp backend: key files, an authenticated encrypted link, and a refused peer.
#include "lockstep/transport/curve.h"

#include <sys/stat.h>

#include <fstream>
#include <mutex>

#include "test_util.h"

namespace lockstep::transport {
namespace {

using namespace testing;

TEST(CurveKeys, WritesZ85FilesWithOwnerOnlySecretAndReadsThemBack) {
  char tmpl[] = "/tmp/lskXXXXXX";
  std::filesystem::path dir = mkdtemp(tmpl);
  CurveKeyPair keys = GenerateCurveKeyPair();
  EXPECT_EQ(keys.public_key.size(), 40u);
  EXPECT_NE(keys.public_key, keys.secret_key);
  CurveKeyFiles files = WriteCurveKeyPair(keys, dir / "k", "chip0");
  struct stat st {};
  ASSERT_EQ(stat(files.secret_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  CurveKeyPair back = ReadCurveKeyPair(dir / "k", "chip0");
  EXPECT_EQ(back.public_key, keys.public_key);
  EXPECT_EQ(back.secret_key, keys.secret_key);
  ExpectError([&] { WriteCurveKeyPair(keys, dir / "k", "chip0"); }, ErrorCode::kInvalidInput,
              {"chip0.", "already exists"});
  std::ofstream(dir / "bad.public") << "not a key\n";
  ExpectError([&] { ReadCurveKey(dir / "bad.public"); }, ErrorCode::kInvalidInput,
              {"bad.public: not a CURVE key"});
  std::filesystem::remove_all(dir);
}

struct Chip {
  CurveKeyPair keys = GenerateCurveKeyPair();
};

TransportOptions CurveOptionsFor(const Chip& self, uint32_t peer, const std::string& peer_key,
                                 std::vector<std::string>* log, std::mutex* mu) {
  TransportOptions o = OptionsFor("tcp");
  o.curve.enabled = true;
  o.curve.public_key = self.keys.public_key;
  o.curve.secret_key = self.keys.secret_key;
  o.curve.peer_public_keys[peer] = peer_key;
  o.log = [log, mu](std::string_view line) {
    std::lock_guard lock(*mu);
    log->emplace_back(line);
  };
  return o;
}

LinkSpec Link01() {
  LinkSpec l;
  l.a = {0, 5};
  l.b = {1, 5};
  return l;
}

TEST(CurveTcp, AuthenticatedPeersExchangeTensors) {
  Chip c0;
  Chip c1;
  std::vector<std::string> log;
  std::mutex mu;
  auto t0 = CreateTransport(CurveOptionsFor(c0, 1, c1.keys.public_key, &log, &mu));
  auto t1 = CreateTransport(CurveOptionsFor(c1, 0, c0.keys.public_key, &log, &mu));
  LinkSpec l = Link01();
  auto f1 = std::async(std::launch::async, [&] { return t1->Open(l, l.b, kWait); });
  auto e0 = t0->Open(l, l.a, kWait);
  auto e1 = f1.get();
  e1->Send(Tensor(0, 1, 70'000, 5), kWait);
  EXPECT_TRUE(HasPattern(e0->Receive(Want(0, 1), kWait).payload, 5));
  e0->Send(Tensor(1, 1, 10, 6), kWait);
  EXPECT_TRUE(HasPattern(e1->Receive(Want(1, 1), kWait).payload, 6));
  EXPECT_TRUE(log.empty());
}

TEST(CurveTcp, PeerWithUnknownKeyIsRefusedAndLogged) {
  Chip c0;
  Chip c1;
  Chip intruder;
  std::vector<std::string> log;
  std::mutex mu;
  // Chip 0 trusts chip 1's key; the intruder knows chip 0's public key but has its own pair.
  auto t0 = CreateTransport(CurveOptionsFor(c0, 1, c1.keys.public_key, &log, &mu));
  auto ti = CreateTransport(CurveOptionsFor(intruder, 0, c0.keys.public_key, &log, &mu));
  LinkSpec l = Link01();
  auto fi = std::async(std::launch::async, [&] {
    ExpectError([&] { ti->Open(l, l.b, Millis(600)); }, ErrorCode::kUnavailable,
                {"peer chip 0 did not connect within 600 ms"});
  });
  ExpectError([&] { t0->Open(l, l.a, Millis(600)); }, ErrorCode::kUnavailable,
              {"link chip 0:5 <-> chip 1:5: peer chip 1 did not connect within 600 ms"});
  fi.get();
  std::lock_guard lock(mu);
  ASSERT_FALSE(log.empty());
  EXPECT_NE(log.front().find("refused a CURVE connection"), std::string::npos) << log.front();
  EXPECT_NE(log.front().find(intruder.keys.public_key), std::string::npos) << log.front();
}

}  // namespace
}  // namespace lockstep::transport
