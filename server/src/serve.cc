#include "lockstep/server/serve.h"

#include <algorithm>
#include <filesystem>
#include <string_view>

#include "lockstep/common/error.h"

namespace lockstep::server {

std::pair<std::string, uint16_t> ParseHttpAddress(const std::string& text) {
  const size_t colon = text.rfind(':');
  const std::string port = colon == std::string::npos ? "" : text.substr(colon + 1);
  if (colon == std::string::npos || colon == 0 || port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) > 65535) {
    throw launch::ConfigError(
        "--http must be HOST:PORT (e.g. 127.0.0.1:8000; port 0: any free port), got '" + text +
        "'");
  }
  return {text.substr(0, colon), static_cast<uint16_t>(std::stoi(port))};
}

ServedModel LoadServedModel(const partition::ModelSpec& spec, const ServedModelArgs& args) {
  ServedModel m;
  // The tokenizer: --tokenizer, else the model folder's when it has one.
  if (!args.tokenizer.empty()) {
    if (!tokenizer::Tokenizer::Exists(args.tokenizer)) {
      throw launch::ConfigError("--tokenizer " + args.tokenizer + ": no tokenizer.json there");
    }
    m.tokenizer =
        std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::Load(args.tokenizer));
  } else if (!args.model.empty()) {
    std::error_code ec;
    const std::string folder = std::filesystem::is_directory(args.model, ec)
                                   ? args.model
                                   : std::filesystem::path(args.model).parent_path().string();
    if (tokenizer::Tokenizer::Exists(folder)) {
      m.tokenizer = std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::Load(folder));
    }
  }
  ModelCard& card = m.card;
  card.id = args.name.empty() ? spec.name : args.name;
  card.context = spec.max_position_embeddings;
  card.vocab_size = spec.vocab_size;
  card.tokenizer = m.tokenizer.get();
  if (!args.model.empty()) card.eos = launch::ModelEosIds(args.model);
  if (m.tokenizer && m.tokenizer->eos_id() &&
      std::find(card.eos.begin(), card.eos.end(), *m.tokenizer->eos_id()) == card.eos.end()) {
    card.eos.push_back(*m.tokenizer->eos_id());
  }
  return m;
}

RunFigures FiguresOf(const coordinator::Coordinator& coordinator, const launch::Launch& launch) {
  const coordinator::RunStats& stats = coordinator.stats();
  RunFigures f;
  f.steps = stats.steps;
  f.decode_steps = stats.decode_steps;
  f.decode_wall_ns = stats.decode_wall_ns;
  using schedule::InstrKind;
  for (const auto& [chip, c] : stats.chips) {
    const control::StepTimes& t = c.decode_times;
    if (c.decode_steps > 0) {
      f.chips_by_id[chip] = {{{"compute", t.of(InstrKind::kCompute)},
                              {"reduce", t.of(InstrKind::kReduce)},
                              {"send", t.of(InstrKind::kSend)},
                              {"recv", t.of(InstrKind::kRecv)},
                              {"forward", t.of(InstrKind::kForward)},
                              {"step", t.step_ns}},
                             c.decode_steps};
    }
    for (const auto& [link, l] : c.sent) f.links.push_back({chip, l.link, l.peer, l.bytes});
  }
  f.shard_bytes = stats.shard_bytes;
  f.failovers = static_cast<int64_t>(coordinator.failovers().size());
  f.chips = static_cast<int64_t>(launch.deployment().chips.size());
  f.slots = launch.deployment().slots;
  return f;
}

void ServeHttp(launch::Launch& launch, const ServedModel& model, HttpOptions options,
               const std::function<void(const std::string& url, uint16_t port)>& listening) {
  coordinator::Coordinator& coord = launch.coordinator();
  const int32_t slots = launch.deployment().slots;
  options.slots = slots;
  const std::string host = options.host;
  const std::function<void(std::string_view)> log = options.log;
  HttpServer server(model.card, std::move(options));
  const std::string url = "http://" + host + ":" + std::to_string(server.port());
  if (log) {
    log("serving '" + model.card.id + "' on " + url + " (" + std::to_string(slots) + " slots, " +
        std::to_string(launch.deployment().chips.size()) + " chips over " +
        launch.config().deploy.transport.backend + "; tokenizer: " +
        (model.tokenizer ? model.tokenizer->Describe() : "none, prompts are token ids") + ")");
  }
  if (listening) listening(url, server.port());
  // Before every step (and while idle) the run's figures go to /metrics.
  coordinator::Admission admission = server.admission();
  admission.poll = [&, poll = admission.poll](
                       const std::function<void(coordinator::Request)>& submit, bool idle) {
    const bool more = poll(submit, idle);
    server.metrics().Publish(FiguresOf(coord, launch));
    return more;
  };
  try {
    coord.Generate({}, server.on_token(), &admission);
  } catch (const launch::Interrupted& e) {
    server.Fail("the server is shutting down (signal " + std::to_string(e.signal()) + ")");
    throw;
  } catch (const std::exception& e) {
    server.Fail(e.what());
    throw;
  }
}

}  // namespace lockstep::server
