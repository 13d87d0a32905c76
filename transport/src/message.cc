#include "lockstep/transport/message.h"

#include <utility>

namespace lockstep::transport {
namespace {

class VectorOwner : public Payload::Owner {
 public:
  explicit VectorOwner(std::vector<std::byte> bytes) : bytes_(std::move(bytes)) {}
  std::byte* data() { return bytes_.data(); }

 private:
  std::vector<std::byte> bytes_;
};

class ArrayOwner : public Payload::Owner {
 public:
  explicit ArrayOwner(size_t size) : bytes_(new std::byte[size]) {}
  std::byte* data() { return bytes_.get(); }

 private:
  std::unique_ptr<std::byte[]> bytes_;
};

}  // namespace

Payload Payload::Uninitialized(size_t size) {
  auto owner = std::make_unique<ArrayOwner>(size);
  std::byte* data = owner->data();
  return Payload(data, size, std::move(owner));
}

std::string ToString(PortRef end) {
  return "chip " + std::to_string(end.chip) + ":" + std::to_string(end.port);
}

std::string LinkName(const LinkSpec& link) {
  return "link " + ToString(link.a) + " <-> " + ToString(link.b);
}

const QueueBound& BoundFrom(const LinkSpec& link, PortRef from) {
  return from == link.a ? link.a_to_b : link.b_to_a;
}

Payload::Payload(size_t size) : Payload(std::vector<std::byte>(size)) {}

Payload::Payload(std::vector<std::byte> bytes) {
  size_ = bytes.size();
  auto owner = std::make_unique<VectorOwner>(std::move(bytes));
  data_ = owner->data();
  owner_ = std::move(owner);
}

Payload::Payload(std::byte* data, size_t size, std::unique_ptr<Owner> owner)
    : data_(data), size_(size), owner_(std::move(owner)) {}

std::unique_ptr<Payload::Owner> Payload::Release() {
  data_ = nullptr;
  size_ = 0;
  return std::move(owner_);
}

}  // namespace lockstep::transport
