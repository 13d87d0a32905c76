// Serving a deployed run over HTTP: what `lockstep serve` (workers it starts) and
// `lockstep-coordinator --http` (workers a launcher started) share, so the two front ends only
// parse flags and print. ServedModel is the model as clients see it (ModelCard: id, context,
// vocabulary, tokenizer, end-of-sequence ids); ServeHttp binds an HttpServer in front of a
// deployed launch::Launch and runs the coordinator with the server's admission hook until the
// server stops (HttpOptions::stop_requested, or Stop()), publishing the run's figures to /metrics
// before every step.
//
// Thread-safety: ServeHttp runs on the thread that owns the Launch (the coordinator's).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "lockstep/coordinator/coordinator.h"
#include "lockstep/launch/launch.h"
#include "lockstep/server/http_server.h"
#include "lockstep/server/metrics.h"
#include "lockstep/server/openai.h"
#include "lockstep/tokenizer/tokenizer.h"

namespace lockstep::server {

// HOST:PORT (port 0: any free port) -> (host, port); launch::ConfigError naming --http otherwise.
std::pair<std::string, uint16_t> ParseHttpAddress(const std::string& text);

// The served model: its card, and the tokenizer the card points to (owned here, so a
// ServedModel may move).
struct ServedModel {
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;  // null: prompts are token ids
  ModelCard card;
};

struct ServedModelArgs {
  std::string model;      // --model: config.json or its folder; empty (a plan's model): no files
  std::string tokenizer;  // --tokenizer: tokenizer.json or its folder; empty: the model folder's
  std::string name;       // --served-model-name; empty: the model's name
};

// Loads the tokenizer (when there is one) and makes the card for `spec`; the EOS ids are the
// model's (config.json, generation_config.json) and the tokenizer's. launch::ConfigError naming
// --tokenizer when it names no tokenizer.json; Error naming the file for one that cannot be read.
ServedModel LoadServedModel(const partition::ModelSpec& spec, const ServedModelArgs& args);

// The run's figures for GET /metrics, as the coordinator counts them.
RunFigures FiguresOf(const coordinator::Coordinator& coordinator, const launch::Launch& launch);

// Binds an HttpServer for `model` in front of `launch` (started and deployed; options.slots is
// set to the deployment's), calls `listening` with its URL ("http://HOST:PORT") once it accepts,
// then runs the coordinator with the server's admission hook until the server stops: after
// options.stop_requested (new requests 503, the admitted ones finish) it returns. When the run
// fails (a worker lost, launch::Interrupted) every open request gets a 503 naming why and the
// exception is rethrown.
void ServeHttp(launch::Launch& launch, const ServedModel& model, HttpOptions options,
               const std::function<void(const std::string& url, uint16_t port)>& listening);

}  // namespace lockstep::server
