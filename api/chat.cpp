#include "api/chat.h"

namespace api {

std::string Content::joinedText() const {
  if (kind == Kind::kText) return text;
  std::string out;
  bool first = true;
  for (const ContentPart& p : parts) {
    if (p.type != ContentPart::Type::kText) continue;
    if (!first) out += '\n';
    out += p.text;
    first = false;
  }
  return out;
}

bool Content::hasImages() const {
  for (const ContentPart& p : parts) {
    if (p.type == ContentPart::Type::kImageUrl) return true;
  }
  return false;
}

std::string_view roleName(Role role) {
  switch (role) {
    case Role::kSystem: return "system";
    case Role::kDeveloper: return "developer";
    case Role::kUser: return "user";
    case Role::kAssistant: return "assistant";
    case Role::kTool: return "tool";
    case Role::kFunction: return "function";
  }
  return "user";
}

}  // namespace api
