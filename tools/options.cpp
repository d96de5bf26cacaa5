#include "tools/options.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>


namespace tools {

api::StatusOr<Options> Options::parse(int argc, char** argv, const std::set<std::string>& valued,
                                      const std::set<std::string>& flags) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) {
      o.positional_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2), value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    if (flags.count(name)) {
      if (inline_value) {
        return api::Status(api::ErrorCode::kInvalidRequest, "--" + name + " takes no value");
      }
      o.flags_.insert(name);
    } else if (valued.count(name)) {
      if (!inline_value) {
        if (i + 1 >= argc) {
          return api::Status(api::ErrorCode::kInvalidRequest, "--" + name + " needs a value");
        }
        value = argv[++i];
      }
      o.values_[name] = value;
    } else {
      return api::Status(api::ErrorCode::kInvalidRequest, "unknown option '" + arg + "'");
    }
  }
  return o;
}

std::optional<std::string> Options::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

api::StatusOr<std::optional<double>> Options::number(const std::string& name, double min,
                                                     double max) const {
  auto v = get(name);
  if (!v) return std::optional<double>();
  char* end = nullptr;
  double d = std::strtod(v->c_str(), &end);
  if (v->empty() || *end != '\0' || !std::isfinite(d) || d < min || d > max) {
    char range[96];
    std::snprintf(range, sizeof range, "a number from %g to %g", min, max);
    return api::Status(api::ErrorCode::kInvalidRequest,
                       "--" + name + " must be " + range + ", got '" + *v + "'");
  }
  return std::optional<double>(d);
}

api::StatusOr<std::optional<int64_t>> Options::time(const std::string& name) const {
  auto v = get(name);
  if (!v) return std::optional<int64_t>();
  auto t = parseTime(*v);
  if (!t) {
    return api::Status(api::ErrorCode::kInvalidRequest,
                       "--" + name + " must be YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or Unix ms, got '" +
                           *v + "'");
  }
  return std::optional<int64_t>(*t);
}

namespace {

// Days from 1970-01-01 to the civil date (proleptic Gregorian).
int64_t daysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool digits(const std::string& s, size_t pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

}  // namespace

std::optional<int64_t> parseTime(const std::string& text) {
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos &&
      text.size() <= 16) {
    return std::stoll(text);
  }
  int y, mo, d, h = 0, mi = 0, sec = 0;
  if (!digits(text, 0, 4, &y) || text.size() < 10 || text[4] != '-' || !digits(text, 5, 2, &mo) ||
      text[7] != '-' || !digits(text, 8, 2, &d)) {
    return std::nullopt;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31) return std::nullopt;
  size_t pos = 10;
  if (text.size() > 10) {
    if (text[10] != 'T' || !digits(text, 11, 2, &h) || text.size() < 16 || text[13] != ':' ||
        !digits(text, 14, 2, &mi)) {
      return std::nullopt;
    }
    pos = 16;
    if (pos < text.size() && text[pos] == ':') {
      if (!digits(text, 17, 2, &sec)) return std::nullopt;
      pos = 19;
    }
    if (pos + 1 != text.size() || text[pos] != 'Z') return std::nullopt;
    if (h > 23 || mi > 59 || sec > 60) return std::nullopt;
  }
  int64_t days = daysFromCivil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  return ((days * 24 + h) * 60 + mi) * 60000 + int64_t{sec} * 1000;
}

}  // namespace tools
