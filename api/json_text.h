// Edits of JSON text that keep everything else byte for byte: a body handed on to an upstream
// (or back to a client) unchanged but for the few top-level fields the gateway decides.
// Re-serializing through api::Json would sort every object's keys and normalize numbers and
// escapes; these functions copy the untouched members as they are.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/chat.h"
#include "api/status.h"

namespace api {

struct MemberEdit {
  std::string key;
  std::optional<Json> value;  // nullopt: the member is removed
};

// `object_text` must be one JSON object (whitespace around it allowed). Every top-level member
// whose key (after unescaping) an edit names is removed, wherever it stands and however often
// it appears; the edits with a value are then written first, in their order, followed by the
// other members as they were. Nested members of the same name are untouched. Linear in the
// text's size. kInvalidRequest when the text is not a JSON object (its members' values are
// skipped, not validated: pass text that has been parsed once).
StatusOr<std::string> editTopLevelMembers(std::string_view object_text,
                                          const std::vector<MemberEdit>& edits);

}  // namespace api
