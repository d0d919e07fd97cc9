#include "daemon/upgrade/handover_protocol.h"

namespace sluice::daemon::upgrade {

std::string encode_message(const nlohmann::json& message) {
  const std::string text = message.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  const auto size = static_cast<std::uint32_t>(text.size());
  std::string frame;
  frame.reserve(4 + text.size());
  for (const int shift : {24, 16, 8, 0}) frame.push_back(static_cast<char>((size >> shift) & 0xff));
  frame += text;
  return frame;
}

Result<std::optional<nlohmann::json>> MessageReader::next() {
  if (buffer_.size() < 4) return std::optional<nlohmann::json>{};
  std::uint32_t size = 0;
  for (int i = 0; i < 4; ++i)
    size = (size << 8) | static_cast<unsigned char>(buffer_[static_cast<std::size_t>(i)]);
  if (size > kMaxMessageBytes) {
    return fail("handover message of " + std::to_string(size) + " bytes (limit " +
                std::to_string(kMaxMessageBytes) + ")");
  }
  if (buffer_.size() < 4 + std::size_t{size}) return std::optional<nlohmann::json>{};
  auto message = nlohmann::json::parse(buffer_.begin() + 4, buffer_.begin() + 4 + size, nullptr, false);
  buffer_.erase(0, 4 + std::size_t{size});
  if (message.is_discarded()) return fail("handover message is not JSON");
  const auto type = message.is_object() ? message.find("type") : message.end();
  if (!message.is_object() || type == message.end() || !type->is_string()) {
    return fail("handover message without a \"type\"");
  }
  return std::optional<nlohmann::json>{std::move(message)};
}

}  // namespace sluice::daemon::upgrade
