#include "lockstep/model/reference.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>
#include <type_traits>

#include "lockstep/common/error.h"
#include "ops.h"
#include "test_models.h"

namespace lockstep::model {
namespace {

using partition::ModelSpec;
using testing::TinyLlama;

// Generated weights made "sharper" than an init, so attention is far from uniform and every
// feature (RoPE, biases, windows) moves the logits well beyond rounding noise.
LlamaWeights SharpWeights(const ModelSpec& spec, uint64_t seed = 11) {
  LlamaWeights w = GenerateLlamaWeights(spec, seed);
  auto scale = [](auto& t, float s) {
    std::vector<float>* v;
    if constexpr (std::is_same_v<std::decay_t<decltype(t)>, Weight>) {
      v = &t.values;
    } else {
      v = &t;
    }
    for (float& x : *v) x *= s;
  };
  for (LayerWeights& l : w.layers) {
    scale(l.q, 8.0f);
    scale(l.k, 8.0f);
    scale(l.v, 5.0f);
    scale(l.o, 5.0f);
    scale(l.gate, 5.0f);
    scale(l.up, 5.0f);
    scale(l.down, 5.0f);
    scale(l.q_bias, 20.0f);
    scale(l.k_bias, 20.0f);
    scale(l.v_bias, 20.0f);
  }
  for (LayerWeights& l : w.layers) {
    // Experts as sharp as the dense MLP; the router sharper still, so the top-k choice is far
    // from a tie (an fp32 and a float64 forward pass then pick the same experts).
    for (ExpertWeights& e : l.experts) {
      scale(e.gate, 5.0f);
      scale(e.up, 5.0f);
      scale(e.down, 5.0f);
    }
    scale(l.router, 30.0f);
  }
  scale(w.lm_head, 5.0f);
  if (spec.tie_word_embeddings) scale(w.embed, 5.0f);
  return w;
}

// ---- An independent implementation: plain formulas in double, no cache, no chunking. ----
struct Switches {
  bool rope = true;
  bool bias = true;
  bool rope_scaling = true;
  bool window = true;
  bool renormalize = true;  // MoE: divide the top-k probabilities by their sum
};

std::vector<double> PlainInvFreq(const ModelSpec& s, bool scaling) {
  std::vector<double> inv;
  for (int64_t i = 0; i < s.head_dim / 2; ++i) {
    inv.push_back(1.0 / std::pow(s.rope_theta, 2.0 * i / s.head_dim));
  }
  if (!scaling || !s.rope_scaling) return inv;
  const partition::RopeScaling& r = *s.rope_scaling;
  for (double& f : inv) {
    if (r.type == "linear") {
      f /= r.factor;
      continue;
    }
    // Llama 3.1: keep high frequencies, divide low ones by factor, interpolate in between.
    const double wavelen = 2 * std::numbers::pi / f;
    const double low_wavelen = r.original_max_position_embeddings / r.low_freq_factor;
    const double high_wavelen = r.original_max_position_embeddings / r.high_freq_factor;
    if (wavelen < high_wavelen) continue;
    if (wavelen > low_wavelen) {
      f /= r.factor;
      continue;
    }
    const double smooth = (r.original_max_position_embeddings / wavelen - r.low_freq_factor) /
                          (r.high_freq_factor - r.low_freq_factor);
    f = (1 - smooth) * f / r.factor + smooth * f;
  }
  return inv;
}

using Vec = std::vector<double>;

Vec PlainRmsNorm(const Vec& x, const std::vector<float>& w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double r = 1.0 / std::sqrt(ss / x.size() + eps);
  Vec out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = w[i] * x[i] * r;
  return out;
}

// y = W x + b, W [out, in] row-major.
Vec PlainLinear(const std::vector<float>& w, const std::vector<float>& b, const Vec& x,
                bool use_bias) {
  const size_t out = w.size() / x.size();
  Vec y(out, 0.0);
  for (size_t o = 0; o < out; ++o) {
    for (size_t i = 0; i < x.size(); ++i) y[o] += w[o * x.size() + i] * x[i];
    if (use_bias && !b.empty()) y[o] += b[o];
  }
  return y;
}

// Rotate-half RoPE: pairs (i, i + d/2) rotate by angle pos * inv_freq[i].
void PlainRope(double* x, int64_t d, int64_t pos, const Vec& inv) {
  for (int64_t i = 0; i < d / 2; ++i) {
    const double a = x[i], b = x[i + d / 2], t = pos * inv[i];
    x[i] = a * std::cos(t) - b * std::sin(t);
    x[i + d / 2] = b * std::cos(t) + a * std::sin(t);
  }
}

Vec PlainLogits(const ModelSpec& s, const LlamaWeights& w, const std::vector<int32_t>& tokens,
                Switches sw = {}) {
  const int64_t n = static_cast<int64_t>(tokens.size()), h = s.hidden_size, d = s.head_dim;
  const Vec inv = PlainInvFreq(s, sw.rope_scaling);
  std::vector<Vec> x(n);
  for (int64_t t = 0; t < n; ++t) {
    x[t].assign(w.embed.values.begin() + tokens[t] * h,
                w.embed.values.begin() + (tokens[t] + 1) * h);
  }
  for (const LayerWeights& l : w.layers) {
    std::vector<Vec> q(n), k(n), v(n);
    for (int64_t t = 0; t < n; ++t) {
      const Vec xn = PlainRmsNorm(x[t], l.input_norm, s.rms_norm_eps);
      q[t] = PlainLinear(l.q.values, l.q_bias, xn, sw.bias);
      k[t] = PlainLinear(l.k.values, l.k_bias, xn, sw.bias);
      v[t] = PlainLinear(l.v.values, l.v_bias, xn, sw.bias);
      if (sw.rope) {
        for (int64_t hh = 0; hh < s.num_heads; ++hh) PlainRope(&q[t][hh * d], d, t, inv);
        for (int64_t hh = 0; hh < s.num_kv_heads; ++hh) PlainRope(&k[t][hh * d], d, t, inv);
      }
    }
    for (int64_t t = 0; t < n; ++t) {
      Vec attn(s.q_width(), 0.0);
      for (int64_t hh = 0; hh < s.num_heads; ++hh) {
        const int64_t kvh = hh / (s.num_heads / s.num_kv_heads);
        const int64_t first =
            sw.window && s.sliding_window > 0 ? std::max<int64_t>(0, t - s.sliding_window + 1) : 0;
        Vec score;
        double max = -1e300;
        for (int64_t p = first; p <= t; ++p) {
          double dot = 0;
          for (int64_t i = 0; i < d; ++i) dot += q[t][hh * d + i] * k[p][kvh * d + i];
          score.push_back(dot / std::sqrt(static_cast<double>(d)));
          max = std::max(max, score.back());
        }
        double total = 0;
        for (double& sc : score) total += (sc = std::exp(sc - max));
        for (int64_t p = first; p <= t; ++p) {
          for (int64_t i = 0; i < d; ++i) {
            attn[hh * d + i] += score[p - first] / total * v[p][kvh * d + i];
          }
        }
      }
      const Vec o = PlainLinear(l.o.values, l.o_bias, attn, sw.bias);
      for (int64_t i = 0; i < h; ++i) x[t][i] += o[i];
      const Vec xn = PlainRmsNorm(x[t], l.post_norm, s.rms_norm_eps);
      if (s.is_moe()) {
        // MixtralSparseMoeBlock: softmax over the router logits, the k most likely experts,
        // their probabilities renormalized, the experts' outputs weighted and summed.
        const Vec logits = PlainLinear(l.router.values, {}, xn, false);
        const double m = *std::max_element(logits.begin(), logits.end());
        std::vector<std::pair<double, int64_t>> p;
        double total = 0;
        for (size_t e = 0; e < logits.size(); ++e) {
          p.emplace_back(std::exp(logits[e] - m), static_cast<int64_t>(e));
          total += p.back().first;
        }
        std::partial_sort(p.begin(), p.begin() + s.experts_per_token, p.end(),
                          [](const auto& a, const auto& b) { return a.first > b.first; });
        double chosen = 0;
        for (int64_t i = 0; i < s.experts_per_token; ++i) chosen += p[i].first / total;
        for (int64_t i = 0; i < s.experts_per_token; ++i) {
          const ExpertWeights& e = l.experts[static_cast<size_t>(p[i].second)];
          const double weight = p[i].first / total / (sw.renormalize ? chosen : 1.0);
          const Vec g = PlainLinear(e.gate.values, {}, xn, false);
          const Vec u = PlainLinear(e.up.values, {}, xn, false);
          Vec a(g.size());
          for (size_t j = 0; j < g.size(); ++j) a[j] = g[j] / (1 + std::exp(-g[j])) * u[j];
          const Vec y = PlainLinear(e.down.values, {}, a, false);
          for (int64_t j = 0; j < h; ++j) x[t][j] += weight * y[j];
        }
        continue;
      }
      const Vec g = PlainLinear(l.gate.values, l.gate_bias, xn, sw.bias);
      const Vec u = PlainLinear(l.up.values, l.up_bias, xn, sw.bias);
      Vec a(g.size());
      for (size_t i = 0; i < g.size(); ++i) a[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
      const Vec down = PlainLinear(l.down.values, l.down_bias, a, sw.bias);
      for (int64_t i = 0; i < h; ++i) x[t][i] += down[i];
    }
  }
  return PlainLinear(w.head().values, {}, PlainRmsNorm(x[n - 1], w.final_norm, s.rms_norm_eps),
                     false);
}

double MaxAbsDiff(const std::vector<float>& a, const Vec& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

double MaxAbs(const Vec& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

std::vector<int32_t> Prompt(int64_t n, int32_t vocab, int32_t salt = 0) {
  std::vector<int32_t> t;
  for (int64_t i = 0; i < n; ++i)
    t.push_back(static_cast<int32_t>((i * 37 + salt * 11 + 5) % vocab));
  return t;
}

std::vector<float> LastLogits(const ReferenceModel& m, const std::vector<int32_t>& tokens) {
  KvCache cache = m.NewCache(64);
  std::vector<SequenceStep> step = {{&cache, tokens}};
  return m.Forward(step)[0];
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Checks the model's logits against the plain formulas, and that turning `broken` off in the
// plain formulas moves the logits by far more than the tolerance (so the check has teeth).
void ExpectMatchesPlain(const ModelSpec& spec, std::optional<Switches> broken) {
  const LlamaWeights w = SharpWeights(spec);
  const ReferenceModel model(spec, w);
  const std::vector<int32_t> tokens = Prompt(20, static_cast<int32_t>(spec.vocab_size));
  const std::vector<float> got = LastLogits(model, tokens);
  const Vec want = PlainLogits(spec, w, tokens);
  const double tolerance = 1e-4 * MaxAbs(want);
  ASSERT_GT(MaxAbs(want), 0.5) << "logits too flat to test anything";
  EXPECT_LT(MaxAbsDiff(got, want), tolerance) << spec.name;
  if (broken) {
    EXPECT_GT(MaxAbsDiff(got, PlainLogits(spec, w, tokens, *broken)), 100 * tolerance)
        << spec.name << ": the switched-off feature does not change the logits";
  }
}

TEST(ReferenceModel, MatchesPlainFormulasWithGqaAndRope) {
  ExpectMatchesPlain(TinyLlama(), Switches{.rope = false});
}

// Mixtral's sparse MoE block (4 experts, 2 per token) against the float64 formulas; without the
// renormalization of the top-2 probabilities the logits move far beyond the tolerance.
TEST(ReferenceModel, MatchesPlainFormulasWithMixtureOfExperts) {
  const ModelSpec spec = testing::TinyMixtral();
  ASSERT_TRUE(spec.is_moe());
  ExpectMatchesPlain(spec, Switches{.renormalize = false});
}

TEST(ReferenceModel, MatchesPlainFormulasWithTiedEmbeddings) {
  const ModelSpec spec = TinyLlama(R"("tie_word_embeddings": true,)");
  ExpectMatchesPlain(spec, std::nullopt);
  EXPECT_TRUE(SharpWeights(spec).lm_head.empty());
}

TEST(ReferenceModel, MatchesPlainFormulasWithQwen2Biases) {
  ExpectMatchesPlain(TinyLlama("", "qwen2"), Switches{.bias = false});
}

TEST(ReferenceModel, MatchesPlainFormulasWithLlama3RopeScaling) {
  const ModelSpec spec = TinyLlama(
      R"("rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 64},)");
  // head_dim 8: wavelengths 2pi x [1, 10, 100, 1000] fall in the high, medium, low, low bands.
  const ReferenceModel model(spec, GenerateLlamaWeights(spec, 1));
  const std::vector<float>& inv = model.inv_freq();
  const Vec plain = PlainInvFreq(spec, true);
  ASSERT_EQ(inv.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(inv[i], plain[i], 1e-6 * plain[i]) << i;
  EXPECT_EQ(inv[0], 1.0f);              // high: unchanged
  EXPECT_GT(inv[1], 0.1f / 8 * 1.01f);  // medium: interpolated
  EXPECT_LT(inv[1], 0.1f * 0.99f);
  EXPECT_NEAR(inv[2], 0.01 / 8, 1e-9);  // low: divided by factor
  ExpectMatchesPlain(spec, Switches{.rope_scaling = false});
}

TEST(ReferenceModel, MatchesPlainFormulasWithSlidingWindow) {
  ExpectMatchesPlain(TinyLlama(R"("sliding_window": 4,)", "mistral"), Switches{.window = false});
}

TEST(ReferenceModel, BatchedRowsAreBitIdenticalToSingleSequences) {
  for (const ModelSpec& spec : {TinyLlama("", "qwen2"), testing::TinyMixtral()}) {
    const ReferenceModel model(spec, SharpWeights(spec));
    const int32_t vocab = static_cast<int32_t>(spec.vocab_size);
    std::vector<KvCache> alone, batched;
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < 4; ++i) {
      prompts.push_back(Prompt(3 + 4 * i, vocab, i));
      alone.push_back(model.NewCache(32));
      batched.push_back(model.NewCache(32));
    }
    for (int step = 0; step < 4; ++step) {
      std::vector<SequenceStep> batch;
      std::vector<std::vector<float>> single;
      for (int i = 0; i < 4; ++i) {
        std::vector<int32_t> tokens =
            step == 0 ? prompts[i] : std::vector<int32_t>{(step * 13 + i * 7) % vocab};
        std::vector<SequenceStep> one = {{&alone[i], tokens}};
        single.push_back(model.Forward(one)[0]);
        batch.push_back({&batched[i], tokens});
      }
      const std::vector<std::vector<float>> together = model.Forward(batch);
      for (int i = 0; i < 4; ++i) {
        EXPECT_TRUE(SameBits(together[i], single[i]))
            << spec.name << " step " << step << " sequence " << i;
      }
    }
  }
}

// The router's choice (ops.h RouteRow): the k most likely experts, ties to the lower index,
// returned in ascending index with their renormalized probabilities.
TEST(MoeRouting, TopKTiesGoToTheLowerExpertAndWeightsAreRenormalized) {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
  const ops::Route top2 = ops::RouteRow(logits.data(), 5, 2);
  EXPECT_EQ(top2.experts, (std::vector<int64_t>{1, 3}));  // the tie of experts 1 and 3
  EXPECT_EQ(top2.weights, (std::vector<float>{0.5f, 0.5f}));
  const ops::Route top3 = ops::RouteRow(logits.data(), 5, 3);
  EXPECT_EQ(top3.experts, (std::vector<int64_t>{1, 3, 4}));
  const double e = std::exp(1.0);  // p1 = p3 = e * p4
  EXPECT_NEAR(top3.weights[0], e / (2 * e + 1), 1e-6);
  EXPECT_NEAR(top3.weights[2], 1 / (2 * e + 1), 1e-6);
  EXPECT_NEAR(top3.weights[0] + top3.weights[1] + top3.weights[2], 1.0, 1e-6);
}

TEST(ReferenceModel, KvCacheDecodeEqualsRecomputingThePrefix) {
  const ModelSpec spec = TinyLlama();
  const ReferenceModel model(spec, SharpWeights(spec));
  const std::vector<int32_t> tokens = Prompt(17, static_cast<int32_t>(spec.vocab_size));
  for (size_t prefix : {1u, 5u, 16u}) {
    KvCache cache = model.NewCache(64);
    std::vector<SequenceStep> step = {{&cache, {tokens.begin(), tokens.begin() + prefix}}};
    std::vector<float> logits = model.Forward(step)[0];
    for (size_t i = prefix; i < tokens.size(); ++i) {
      step[0].tokens = {tokens[i]};
      logits = model.Forward(step)[0];
    }
    EXPECT_EQ(cache.length(), 17);
    EXPECT_TRUE(SameBits(logits, LastLogits(model, tokens))) << "prefix " << prefix;
  }
}

TEST(ReferenceModel, GenerationIsDeterministic) {
  const ModelSpec spec = TinyLlama();
  const ReferenceModel model(spec, SharpWeights(spec));
  const std::vector<int32_t> prompt = {1, 2, 3};
  const Generation greedy = Generate(model, prompt, 6, {}, true);
  ASSERT_EQ(greedy.tokens.size(), 6u);
  ASSERT_EQ(greedy.logits.size(), 6u);
  EXPECT_EQ(Generate(model, prompt, 6, {}).tokens, greedy.tokens);
  // Row i is the distribution token i was drawn from, and equals a fresh prefix recompute.
  std::vector<int32_t> seen = prompt;
  for (size_t i = 0; i < greedy.tokens.size(); ++i) {
    const std::vector<float>& row = greedy.logits[i];
    EXPECT_EQ(greedy.tokens[i], std::max_element(row.begin(), row.end()) - row.begin());
    EXPECT_TRUE(SameBits(row, LastLogits(model, seen))) << i;
    seen.push_back(greedy.tokens[i]);
  }
  const SamplingOptions hot{.temperature = 1.5, .top_p = 0.9, .seed = 7};
  const Generation a = Generate(model, prompt, 12, hot);
  EXPECT_EQ(Generate(model, prompt, 12, hot).tokens, a.tokens);
  EXPECT_NE(Generate(model, prompt, 12, {.temperature = 1.5, .top_p = 0.9, .seed = 8}).tokens,
            a.tokens);
  EXPECT_NE(a.tokens, Generate(model, prompt, 12, {}).tokens);
  // A nucleus so small it holds only the most likely token is greedy.
  EXPECT_EQ(Generate(model, prompt, 6, {.temperature = 1.0, .top_p = 1e-9, .seed = 3}).tokens,
            greedy.tokens);
}

TEST(ReferenceModel, SamplingFollowsTheDistribution) {
  // Two tokens with probabilities 0.25 / 0.75 at temperature 1; the rest ~0.
  std::vector<float> logits(10, -100.0f);
  logits[2] = 0.0f;
  logits[6] = std::log(3.0f);
  int sixes = 0;
  for (int64_t step = 0; step < 4000; ++step) {
    const int32_t t = SampleToken(logits, {.temperature = 1.0, .seed = 1}, step);
    ASSERT_TRUE(t == 2 || t == 6);
    sixes += t == 6;
  }
  EXPECT_NEAR(sixes / 4000.0, 0.75, 0.03);
  // top_p 0.7 keeps only token 6.
  for (int64_t step = 0; step < 100; ++step) {
    EXPECT_EQ(SampleToken(logits, {.temperature = 1.0, .top_p = 0.7, .seed = 1}, step), 6);
  }
  EXPECT_THROW(SampleToken(logits, {.temperature = -1.0}, 0), Error);
  EXPECT_THROW(SampleToken(logits, {.temperature = 1.0, .top_p = 0.0}, 0), Error);
}

TEST(ReferenceModel, RejectsBadInput) {
  const ModelSpec spec = TinyLlama();
  const ReferenceModel model(spec, GenerateLlamaWeights(spec, 1));
  KvCache cache = model.NewCache(4);
  std::vector<SequenceStep> bad_token = {{&cache, {96}}};
  EXPECT_THROW(model.Forward(bad_token), Error);
  std::vector<SequenceStep> overflow = {{&cache, {1, 2, 3, 4, 5}}};
  EXPECT_THROW(model.Forward(overflow), Error);
  std::vector<SequenceStep> twice = {{&cache, {1}}, {&cache, {2}}};
  EXPECT_THROW(model.Forward(twice), Error);
  EXPECT_EQ(cache.length(), 0) << "a rejected step must not touch the cache";
  EXPECT_THROW(ReferenceModel(TinyLlama(), GenerateLlamaWeights(TinyLlama("", "qwen2"), 1)), Error);
  const ModelSpec yarn = TinyLlama(R"("rope_scaling": {"rope_type": "yarn", "factor": 4.0},)");
  EXPECT_THROW(ReferenceModel(yarn, GenerateLlamaWeights(yarn, 1)), Error);
}

TEST(GenerateWith, EndsAtAStopTokenAndKeepsIt) {
  // A forward pass whose greedy choice is the number of tokens it has seen: 3, 4, 5, ...
  int64_t seen = 0;
  const ForwardStep count = [&](const std::vector<int32_t>& tokens) {
    seen += static_cast<int64_t>(tokens.size());
    std::vector<float> logits(16, 0.0f);
    logits[seen % 16] = 1.0f;
    return logits;
  };
  const std::vector<int32_t> prompt = {7, 8, 9};
  const std::vector<int32_t> stop = {12, 5};
  Generation g = GenerateWith(count, prompt, 8, {}, false, stop);
  EXPECT_EQ(g.tokens, (std::vector<int32_t>{3, 4, 5}));
  EXPECT_TRUE(g.stopped);
  EXPECT_EQ(seen, 5) << "no forward pass after the stop token";
  seen = 0;
  g = GenerateWith(count, prompt, 2, {}, false, stop);
  EXPECT_EQ(g.tokens, (std::vector<int32_t>{3, 4}));
  EXPECT_FALSE(g.stopped) << "max_new came first";
}

}  // namespace
}  // namespace lockstep::model
