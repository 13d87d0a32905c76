#include "lockstep/model/quantize.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "lockstep/common/error.h"

namespace lockstep::model {
namespace {

using partition::ModelSpec;

}  // namespace

std::vector<TensorSpec> QuantizedTensorSpecs(const ModelSpec& spec, WeightFormat format) {
  if (!IsInt8(format)) throw InvalidInput("quantize: fp32 is not an int8 scheme");
  std::vector<TensorSpec> out;
  for (const TensorSpec& t : LlamaTensorSpecs(spec, Dtype::kFp32)) {
    if (!QuantizedInInt8(t)) {
      out.push_back(t);
      continue;
    }
    out.push_back({t.name, t.shape, Dtype::kInt8});
    out.push_back(
        {t.name + "_scale", {t.shape[0], ScalesPerRow(format, t.shape[1])}, Dtype::kFp32});
  }
  return out;
}

void QuantizeCheckpoint(const Checkpoint& in, const ModelSpec& spec, WeightFormat format,
                        const std::filesystem::path& out) {
  if (IsInt8(CheckLlamaWeights(in, spec))) {
    throw InvalidInput(in.path().string() +
                       ": the checkpoint is int8 already (quantize an fp32, fp16 or bf16 one)");
  }
  const std::vector<TensorSpec> specs = QuantizedTensorSpecs(spec, format);
  // The projection quantized last: its q and scales serve its two tensors, block by block.
  std::string current;
  std::vector<int8_t> q;
  std::vector<float> scales;
  auto quantize = [&](const TensorSpec& matrix) {
    if (current == matrix.name) return;
    const std::vector<float> w = in.ReadFp32(matrix.name);
    in.Release(matrix.name);
    const Weight quantized = QuantizeWeight(w.data(), matrix.shape[0], matrix.shape[1], format);
    q = quantized.RowMajorQ();
    scales = quantized.RowMajorScales();
    current = matrix.name;
  };
  WriteSafetensors(out, specs,
                   [&](size_t index, int64_t first, std::span<float> values) {
                     const TensorSpec& t = specs[index];
                     if (t.dtype == Dtype::kInt8) {
                       quantize(t);
                       for (size_t i = 0; i < values.size(); ++i) {
                         values[i] = q[static_cast<size_t>(first) + i];
                       }
                     } else if (t.name.ends_with("_scale") && index > 0 &&
                                specs[index - 1].dtype == Dtype::kInt8) {
                       quantize(specs[index - 1]);
                       std::copy_n(scales.begin() + first, values.size(), values.begin());
                     } else {
                       in.ReadFp32(t.name, first, values);
                     }
                   },
                   {{"format", "pt"},
                    {"lockstep.quantization", std::string(WeightFormatName(format))},
                    {"lockstep.model", spec.name},
                    {"lockstep.source", in.path().filename().string()}});
}

LlamaWeights QuantizeWeights(const LlamaWeights& weights, WeightFormat format) {
  auto quantize = [&](const Weight& w) {
    if (w.empty()) return Weight{};
    if (w.format != WeightFormat::kFp32) {
      throw InvalidInput("QuantizeWeights: the weights are " +
                         std::string(WeightFormatName(w.format)) + " already");
    }
    return QuantizeWeight(w.values.data(), w.rows, w.cols, format);
  };
  LlamaWeights out = weights;
  out.embed = quantize(weights.embed);
  out.lm_head = quantize(weights.lm_head);
  for (LayerWeights& l : out.layers) {
    for (Weight* w : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) *w = quantize(*w);
    for (ExpertWeights& e : l.experts) {
      for (Weight* w : {&e.gate, &e.up, &e.down}) *w = quantize(*w);
    }
  }
  return out;
}

WeightsComparison CompareWeights(const ReferenceModel& baseline, const ReferenceModel& candidate,
                                 std::span<const int32_t> prompt, int64_t tokens) {
  const Generation base = Generate(baseline, prompt, tokens, {}, /*keep_logits=*/true);
  KvCache cache = candidate.NewCache(static_cast<int64_t>(prompt.size()) + tokens + 1);
  WeightsComparison c;
  double total = 0.0;
  int64_t count = 0;
  std::vector<int32_t> next(prompt.begin(), prompt.end());
  for (int64_t i = 0; i < tokens; ++i) {
    std::vector<SequenceStep> step = {{&cache, next}};
    const std::vector<float> logits = candidate.Forward(step)[0];
    const std::vector<float>& want = base.logits[static_cast<size_t>(i)];
    for (size_t v = 0; v < logits.size(); ++v) {
      const double d = std::fabs(static_cast<double>(logits[v]) - static_cast<double>(want[v]));
      c.max_abs_logit_diff = std::max(c.max_abs_logit_diff, d);
      total += d;
      ++count;
    }
    const auto top = [](const std::vector<float>& l) {
      return std::max_element(l.begin(), l.end()) - l.begin();
    };
    c.top1_agreements += top(logits) == top(want) ? 1 : 0;
    ++c.positions;
    next = {base.tokens[static_cast<size_t>(i)]};
  }
  c.mean_abs_logit_diff = count > 0 ? total / static_cast<double>(count) : 0.0;
  return c;
}

}  // namespace lockstep::model
