#include "quality/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "policies/ledger.h"

namespace quality::svg {
namespace {

constexpr int64_t kMsPerMinute = 60'000;
constexpr int64_t kMsPerHour = 3'600'000;
constexpr int64_t kMsPerDay = 86'400'000;
// About 31,700 years either side of 1970: far beyond any real record, and small enough that
// bucket arithmetic cannot overflow.
constexpr int64_t kMaxAbsMs = 1'000'000'000'000'000;

// Plot geometry, in viewBox units.
constexpr double kLeft = 70;  // room for the y tick labels and the y axis label
constexpr double kRight = 20;
constexpr double kBottom = 46;  // x tick labels and the x axis label
constexpr double kLegendRow = 18;
constexpr double kCharWidth = 6.4;  // estimated width of one character at 11px
constexpr size_t kMaxTickLabelChars = 18;

double finite(double v) { return std::isfinite(v) ? v : 0.0; }

std::string num(double v) {  // a coordinate
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", finite(v));
  return buf;
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}

// Thousands separators in the integer part of a plain decimal string ("-1234.5").
std::string group(const std::string& s) {
  size_t start = (!s.empty() && s[0] == '-') ? 1 : 0;
  size_t dot = s.find('.');
  size_t int_end = dot == std::string::npos ? s.size() : dot;
  std::string out = s.substr(0, start);
  for (size_t i = start; i < int_end; ++i) {
    out += s[i];
    size_t left = int_end - i - 1;
    if (left > 0 && left % 3 == 0) out += ',';
  }
  out += s.substr(int_end);
  return out;
}

std::string trimZeros(std::string s) {
  if (s.find('.') == std::string::npos) return s;
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

// Decimals for `sig` significant digits of a number below 1 in magnitude.
int smallDecimals(double abs, int sig) {
  int lead = static_cast<int>(std::floor(-std::log10(abs)));  // zeros after the point
  return std::clamp(lead + sig, 1, 12);
}

std::string plainNumber(double v) {
  double a = std::fabs(v);
  if (a >= 1000) return group(fixed(std::round(v), 0));
  if (a >= 10) return trimZeros(fixed(v, 1));
  if (a >= 1) return trimZeros(fixed(v, 2));
  if (a == 0) return "0";
  if (a < 1e-9) return "0";
  return trimZeros(fixed(v, smallDecimals(a, 3)));
}

// A step of 1, 2, 2.5 or 5 times a power of ten, near range / target_ticks.
double niceStep(double range, int target_ticks) {
  if (!(range > 0)) return 1;
  double raw = range / target_ticks;
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double norm = raw / mag;
  double step = norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10;
  return step * mag;
}

struct Axis {
  double lo = 0, hi = 1, step = 1;
};

Axis niceAxis(double lo, double hi, bool integers) {
  lo = finite(lo);
  hi = finite(hi);
  if (hi < lo) std::swap(lo, hi);
  if (hi - lo < 1e-12) {
    // One value: a range around it that keeps 0 in view.
    double pad = std::fabs(hi) > 0 ? std::fabs(hi) : 1;
    if (hi <= 0)
      lo -= pad;
    else
      hi += pad;
    if (lo > 0) lo = 0;
  }
  Axis a;
  a.step = niceStep(hi - lo, 5);
  if (integers) a.step = std::max(1.0, std::round(a.step));
  a.lo = std::floor(lo / a.step + 1e-9) * a.step;
  a.hi = std::ceil(hi / a.step - 1e-9) * a.step;
  if (a.hi <= a.lo) a.hi = a.lo + a.step;
  return a;
}

std::string colorOr(const std::string& color, size_t i) {
  return color.empty() ? std::string(paletteColor(i)) : color;
}

// The <svg> element's opening tag, with the chart's attributes.
std::string openSvg(const Chart& c, int height) {
  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 " +
                  std::to_string(c.width) + " " + std::to_string(height) +
                  "\" role=\"img\" data-chart=\"" + escape(c.name) + "\" aria-label=\"" +
                  escape(c.title) + "\"";
  for (const auto& [name, value] : c.attributes) {
    // Only data-* and aria-* names: never an event handler (onload=...), whatever the caller.
    bool ok = (name.rfind("data-", 0) == 0 || name.rfind("aria-", 0) == 0) && name.size() > 5 &&
              std::all_of(name.begin(), name.end(), [](char ch) {
                return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-';
              });
    if (ok) s += " " + name + "=\"" + escape(value) + "\"";
  }
  s += ">";
  if (!c.title.empty()) s += "<title>" + escape(c.title) + "</title>";
  return s;
}

std::string emptyChart(const Chart& c) {
  const int h = 80;
  return openSvg(c, h) + "<text x=\"" + num(c.width / 2.0) + "\" y=\"44\" text-anchor=\"middle\" " +
         "class=\"nodata\">No data</text></svg>";
}

struct LegendItem {
  std::string name, color;
  bool dashed = false;
};

// Legend rows above the plot; returns the height they take.
double legendHeight(const std::vector<LegendItem>& items, double width) {
  if (items.empty()) return 0;
  double x = kLeft, rows = 1;
  for (const LegendItem& it : items) {
    double w = 22 + kCharWidth * std::min<size_t>(it.name.size(), 28) + 14;
    if (x + w > width - kRight && x > kLeft) {
      ++rows;
      x = kLeft;
    }
    x += w;
  }
  return rows * kLegendRow + 6;
}

std::string legend(const std::vector<LegendItem>& items, double width) {
  std::string s = "<g class=\"legend\">";
  double x = kLeft, y = 6;
  for (const LegendItem& it : items) {
    std::string name = truncate(it.name, 28);
    double w = 22 + kCharWidth * std::min<size_t>(it.name.size(), 28) + 14;
    if (x + w > width - kRight && x > kLeft) {
      y += kLegendRow;
      x = kLeft;
    }
    if (it.dashed) {
      s += "<line x1=\"" + num(x) + "\" y1=\"" + num(y + 5) + "\" x2=\"" + num(x + 16) +
           "\" y2=\"" + num(y + 5) + "\" stroke=\"" + escape(it.color) +
           "\" stroke-width=\"2\" stroke-dasharray=\"4 3\"/>";
    } else {
      s += "<rect x=\"" + num(x + 3) + "\" y=\"" + num(y) + "\" width=\"10\" height=\"10\" " +
           "rx=\"2\" fill=\"" + escape(it.color) + "\"/>";
    }
    s += "<text x=\"" + num(x + 22) + "\" y=\"" + num(y + 9) + "\">" + escape(name) + "</text>";
    x += w;
  }
  return s + "</g>";
}

struct Plot {
  double left, right, top, bottom;
  Axis y;
  double yPos(double v) const {
    double span = y.hi - y.lo;
    double t = span > 0 ? (finite(v) - y.lo) / span : 0;
    return bottom - std::clamp(t, -0.05, 1.05) * (bottom - top);
  }
};

// Horizontal grid lines with y tick labels, and the y axis label.
std::string yAxis(const Plot& p, const Chart& c) {
  std::string s = "<g class=\"axis y\">";
  int ticks = static_cast<int>(std::round((p.y.hi - p.y.lo) / p.y.step));
  for (int i = 0; i <= ticks && i <= 50; ++i) {
    double v = p.y.lo + i * p.y.step;
    double y = p.yPos(v);
    bool zero = std::fabs(v) < p.y.step * 1e-6;
    s += "<line x1=\"" + num(p.left) + "\" y1=\"" + num(y) + "\" x2=\"" + num(p.right) +
         "\" y2=\"" + num(y) + "\" stroke=\"" + (zero ? "#8c959f" : "#e5e7eb") + "\"/>";
    s += "<text x=\"" + num(p.left - 6) + "\" y=\"" + num(y + 4) + "\" text-anchor=\"end\">" +
         escape(format(zero ? 0 : v, c.y_format)) + "</text>";
  }
  if (!c.y_label.empty()) {
    double mid = (p.top + p.bottom) / 2;
    s += "<text class=\"label\" transform=\"translate(14 " + num(mid) +
         ") rotate(-90)\" text-anchor=\"middle\">" + escape(c.y_label) + "</text>";
  }
  return s + "</g>";
}

std::string xAxisLabel(const Plot& p, const Chart& c) {
  if (c.x_label.empty()) return "";
  return "<text class=\"label\" x=\"" + num((p.left + p.right) / 2) + "\" y=\"" +
         num(c.height - 6) + "\" text-anchor=\"middle\">" + escape(c.x_label) + "</text>";
}

// Category labels under bands; every k-th when they would overlap.
std::string categoryLabels(const Plot& p, const std::vector<std::string>& labels) {
  std::string s = "<g class=\"axis x\">";
  size_t n = labels.size();
  if (n == 0) return s + "</g>";
  double band = (p.right - p.left) / static_cast<double>(n);
  size_t longest = 1;
  for (const std::string& l : labels)
    longest = std::max(longest, std::min(l.size(), kMaxTickLabelChars));
  double need = kCharWidth * static_cast<double>(longest) + 10;
  size_t every = std::max<size_t>(1, static_cast<size_t>(std::ceil(need / band)));
  for (size_t i = 0; i < n; i += every) {
    double x = p.left + band * (static_cast<double>(i) + 0.5);
    s += "<text x=\"" + num(x) + "\" y=\"" + num(p.bottom + 16) + "\" text-anchor=\"middle\">" +
         escape(truncate(labels[i], kMaxTickLabelChars)) + "</text>";
  }
  return s + "</g>";
}

std::string markTitle(const std::string& label, const std::string& series, double v, Format f,
                      const std::string& note) {
  std::string t = label;
  if (!series.empty()) t += " · " + series;
  t += ": " + format(v, f);
  if (!note.empty()) t += " (" + note + ")";
  return "<title>" + escape(t) + "</title>";
}

}  // namespace

// ---- Text and numbers ----

std::string escape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  const char* kReplacement = "\xEF\xBF\xBD";
  size_t i = 0;
  while (i < text.size()) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      switch (c) {
        case '&':
          out += "&amp;";
          break;
        case '<':
          out += "&lt;";
          break;
        case '>':
          out += "&gt;";
          break;
        case '"':
          out += "&quot;";
          break;
        case '\'':
          out += "&#39;";
          break;
        case '\t':
        case '\n':
        case '\r':
          out += static_cast<char>(c);
          break;
        default:
          if (c < 0x20 || c == 0x7f)
            out += kReplacement;
          else
            out += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    // A multi-byte UTF-8 sequence: copied when well formed (no overlongs, no surrogates).
    size_t len = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 0;
    if (c >= 0xF5) len = 0;
    bool ok = len > 0 && i + len <= text.size();
    uint32_t cp = 0;
    if (ok) {
      cp = len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
      for (size_t k = 1; k < len; ++k) {
        unsigned char cc = static_cast<unsigned char>(text[i + k]);
        if ((cc & 0xC0) != 0x80) {
          ok = false;
          break;
        }
        cp = (cp << 6) | (cc & 0x3F);
      }
    }
    if (ok) {
      ok = !(len == 3 && cp < 0x800) && !(len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) &&
           !(cp >= 0xD800 && cp <= 0xDFFF) && !(cp >= 0x80 && cp < 0xA0);  // C1 controls
    }
    if (ok) {
      out.append(text.substr(i, len));
      i += len;
    } else {
      out += kReplacement;
      ++i;
    }
  }
  return out;
}

std::string truncate(std::string_view text, size_t max_chars) {
  size_t chars = 0, i = 0;
  while (i < text.size()) {
    if (chars == max_chars) return std::string(text.substr(0, i)) + "\xE2\x80\xA6";  // …
    unsigned char c = static_cast<unsigned char>(text[i]);
    size_t len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    i = std::min(text.size(), i + len);
    ++chars;
  }
  return std::string(text);
}

std::string format(double v, Format f) {
  if (!std::isfinite(v)) v = 0;
  switch (f) {
    case Format::kCount:
      return group(fixed(std::round(v), 0));
    case Format::kNumber:
      return plainNumber(v);
    case Format::kUsd: {
      double a = std::fabs(v);
      std::string sign = v < 0 && a >= 5e-7 ? "-" : "";
      if (a >= 1 || a < 5e-7) return sign + "$" + group(fixed(a < 5e-7 ? 0 : a, 2));
      // Below a dollar: three significant digits, at least cents.
      std::string s = trimZeros(fixed(a, std::max(2, smallDecimals(a, 3))));
      size_t dot = s.find('.');
      size_t decimals = dot == std::string::npos ? 0 : s.size() - dot - 1;
      if (dot == std::string::npos) s += ".";
      for (; decimals < 2; ++decimals) s += '0';
      return sign + "$" + s;
    }
    case Format::kPercent: {
      double p = v * 100;
      double a = std::fabs(p);
      if (a >= 10) return trimZeros(fixed(p, 1)) + "%";
      if (a < 0.005) return "0%";
      return trimZeros(fixed(p, 2)) + "%";
    }
  }
  return plainNumber(v);
}

std::string attrNumber(double v) {
  if (!std::isfinite(v)) return "0";
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.12g", v);
  return buf;
}

std::string_view paletteColor(size_t i) {
  static constexpr std::string_view kPalette[] = {
      "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
      "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
  };
  return kPalette[i % (sizeof(kPalette) / sizeof(kPalette[0]))];
}

// ---- Charts ----

std::string barChart(const Chart& c, const std::vector<Bar>& bars, std::string_view color) {
  if (bars.empty()) return emptyChart(c);
  double lo = 0, hi = 0;
  for (const Bar& b : bars) {
    lo = std::min(lo, finite(b.value));
    hi = std::max(hi, finite(b.value));
  }
  if (c.y_max) hi = std::max(hi, finite(*c.y_max));
  Plot p{kLeft, c.width - kRight, 10, c.height - kBottom,
         niceAxis(lo, hi, c.y_format == Format::kCount)};
  std::string fill = color.empty() ? std::string(paletteColor(0)) : std::string(color);
  std::string s = openSvg(c, c.height) + yAxis(p, c);
  double band = (p.right - p.left) / static_cast<double>(bars.size());
  double width = std::min(band * 0.72, 64.0);
  std::vector<std::string> labels;
  s += "<g class=\"marks\">";
  for (size_t i = 0; i < bars.size(); ++i) {
    const Bar& b = bars[i];
    double v = finite(b.value);
    double x = p.left + band * static_cast<double>(i) + (band - width) / 2;
    double y0 = p.yPos(std::max(v, 0.0)), y1 = p.yPos(std::min(v, 0.0));
    s += "<rect class=\"mark\" x=\"" + num(x) + "\" y=\"" + num(y0) + "\" width=\"" + num(width) +
         "\" height=\"" + num(y1 - y0) + "\" fill=\"" + escape(fill) + "\" data-label=\"" +
         escape(b.label) + "\" data-value=\"" + attrNumber(v) + "\">" +
         markTitle(b.label, "", v, c.y_format, b.note) + "</rect>";
    labels.push_back(b.label);
  }
  s += "</g>" + categoryLabels(p, labels) + xAxisLabel(p, c);
  return s + "</svg>";
}

std::string stackedBarChart(const Chart& c, const std::vector<std::string>& categories,
                            const std::vector<Series>& series) {
  if (categories.empty() || series.empty()) return emptyChart(c);
  auto at = [](const Series& s, size_t i) {
    return i < s.values.size() ? std::max(0.0, finite(s.values[i])) : 0.0;
  };
  double hi = 0;
  for (size_t i = 0; i < categories.size(); ++i) {
    double total = 0;
    for (const Series& s : series) total += at(s, i);
    hi = std::max(hi, total);
  }
  if (c.y_max) hi = std::max(hi, finite(*c.y_max));
  std::vector<LegendItem> items;
  for (size_t k = 0; k < series.size(); ++k)
    items.push_back({series[k].name, colorOr(series[k].color, k)});
  double top = 10 + legendHeight(items, c.width);
  Plot p{kLeft, c.width - kRight, top, c.height - kBottom,
         niceAxis(0, hi, c.y_format == Format::kCount)};
  std::string s = openSvg(c, c.height) + legend(items, c.width) + yAxis(p, c);
  double band = (p.right - p.left) / static_cast<double>(categories.size());
  double width = std::min(band * 0.72, 64.0);
  s += "<g class=\"marks\">";
  for (size_t i = 0; i < categories.size(); ++i) {
    double x = p.left + band * static_cast<double>(i) + (band - width) / 2;
    double base = 0;
    for (size_t k = 0; k < series.size(); ++k) {
      double v = at(series[k], i);
      double y0 = p.yPos(base + v), y1 = p.yPos(base);
      s += "<rect class=\"mark\" x=\"" + num(x) + "\" y=\"" + num(y0) + "\" width=\"" + num(width) +
           "\" height=\"" + num(y1 - y0) + "\" fill=\"" + escape(items[k].color) +
           "\" data-label=\"" + escape(categories[i]) + "\" data-series=\"" +
           escape(series[k].name) + "\" data-value=\"" + attrNumber(v) + "\">" +
           markTitle(categories[i], series[k].name, v, c.y_format, "") + "</rect>";
      base += v;
    }
  }
  s += "</g>" + categoryLabels(p, categories) + xAxisLabel(p, c);
  return s + "</svg>";
}

std::string lineChart(const Chart& c, const std::vector<Line>& lines,
                      const std::vector<RefLine>& refs) {
  bool any = false;
  double xlo = 0, xhi = 0, ylo = 0, yhi = 0;
  bool first = true;
  for (const Line& l : lines) {
    for (const Point& pt : l.points) {
      double x = finite(pt.x), y = finite(pt.y);
      if (first) {
        xlo = xhi = x;
        first = false;
      }
      xlo = std::min(xlo, x);
      xhi = std::max(xhi, x);
      ylo = std::min(ylo, y);
      yhi = std::max(yhi, y);
      any = true;
    }
  }
  if (!any) return emptyChart(c);
  for (const RefLine& r : refs) {
    ylo = std::min(ylo, finite(r.y));
    yhi = std::max(yhi, finite(r.y));
  }
  if (c.y_max) yhi = std::max(yhi, finite(*c.y_max));
  if (c.x_min) xlo = finite(*c.x_min);
  if (c.x_max) xhi = finite(*c.x_max);
  if (xhi - xlo < 1e-12) xhi = xlo + 1;

  std::vector<LegendItem> items;
  for (size_t k = 0; k < lines.size(); ++k) {
    items.push_back({lines[k].name, colorOr(lines[k].color, k), lines[k].dashed});
  }
  for (const RefLine& r : refs)
    items.push_back({r.name, r.color.empty() ? "#b42318" : r.color, true});
  if (items.size() == 1 && lines.size() == 1) items.clear();  // one line needs no legend
  double top = 10 + legendHeight(items, c.width);
  Plot p{kLeft, c.width - kRight, top, c.height - kBottom, niceAxis(ylo, yhi, false)};
  auto xPos = [&](double x) {
    double t = (finite(x) - xlo) / (xhi - xlo);
    return p.left + std::clamp(t, -0.05, 1.05) * (p.right - p.left);
  };

  std::string s = openSvg(c, c.height) + legend(items, c.width) + yAxis(p, c);
  // x ticks: nice values inside [xlo, xhi].
  s += "<g class=\"axis x\">";
  double step = niceStep(xhi - xlo, 6);
  if (step <= 0) step = 1;
  double first_tick = std::ceil(xlo / step - 1e-9) * step;
  for (int i = 0; i <= 60; ++i) {
    double v = first_tick + i * step;
    if (v > xhi + step * 1e-6) break;
    double x = xPos(v);
    s += "<line x1=\"" + num(x) + "\" y1=\"" + num(p.bottom) + "\" x2=\"" + num(x) + "\" y2=\"" +
         num(p.bottom + 4) + "\" stroke=\"#8c959f\"/>";
    s += "<text x=\"" + num(x) + "\" y=\"" + num(p.bottom + 16) + "\" text-anchor=\"middle\">" +
         escape(format(std::fabs(v) < step * 1e-6 ? 0 : v, c.x_format)) + "</text>";
  }
  s += "</g>" + xAxisLabel(p, c);

  for (const RefLine& r : refs) {
    double y = p.yPos(r.y);
    std::string color = r.color.empty() ? "#b42318" : r.color;
    s += "<line class=\"ref\" x1=\"" + num(p.left) + "\" y1=\"" + num(y) + "\" x2=\"" +
         num(p.right) + "\" y2=\"" + num(y) + "\" stroke=\"" + escape(color) +
         "\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\" data-label=\"" + escape(r.name) +
         "\" data-value=\"" + attrNumber(r.y) + "\"><title>" +
         escape(r.name + ": " + format(r.y, c.y_format)) + "</title></line>";
  }
  for (size_t k = 0; k < lines.size(); ++k) {
    const Line& l = lines[k];
    if (l.points.empty()) continue;
    std::string color = colorOr(l.color, k);
    std::string d;
    for (size_t i = 0; i < l.points.size(); ++i) {
      d += (i == 0 ? "M" : " L") + num(xPos(l.points[i].x)) + " " + num(p.yPos(l.points[i].y));
    }
    s += "<g class=\"line\" data-series=\"" + escape(l.name) + "\"><path d=\"" + d +
         "\" fill=\"none\" stroke=\"" + escape(color) + "\" stroke-width=\"2\"" +
         (l.dashed ? " stroke-dasharray=\"6 4\"" : "") + "/>";
    for (const Point& pt : l.points) {
      std::string label = pt.label.empty() ? format(pt.x, c.x_format) : pt.label;
      s += "<circle class=\"mark\" cx=\"" + num(xPos(pt.x)) + "\" cy=\"" + num(p.yPos(pt.y)) +
           "\" r=\"3\" fill=\"" + escape(color) + "\" data-series=\"" + escape(l.name) +
           "\" data-label=\"" + escape(label) + "\" data-x=\"" + attrNumber(pt.x) +
           "\" data-value=\"" + attrNumber(pt.y) + "\">" +
           markTitle(label, l.name, finite(pt.y), c.y_format, "") + "</circle>";
    }
    s += "</g>";
  }
  return s + "</svg>";
}

// ---- Page frame ----

std::string pageStart(std::string_view title, std::string_view subtitle) {
  static const char* const kCss = R"css(
:root{color-scheme:light}
*{box-sizing:border-box}
body{margin:0;background:#f4f5f7;color:#1f2328;
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{background:#1f2937;color:#f9fafb;padding:18px 0}
header .wrap,main{max-width:1120px;margin:0 auto;padding:0 24px}
header h1{margin:0;font-size:22px;font-weight:600}
header p{margin:4px 0 0;color:#cbd5e1}
main{padding-top:8px;padding-bottom:48px}
section{background:#fff;border:1px solid #e1e4e8;border-radius:8px;padding:16px 20px;margin:16px 0}
h2{font-size:18px;margin:0 0 10px}
h3{font-size:15px;margin:16px 0 6px}
p{margin:6px 0}
.note{color:#57606a;font-size:13px}
.empty{padding:20px;text-align:center;color:#57606a;font-style:italic;background:#f6f8fa;
  border-radius:6px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:10px;margin:8px 0}
.card{border:1px solid #e1e4e8;border-radius:6px;padding:10px 12px;background:#fafbfc}
.card .k{color:#57606a;font-size:12px;font-weight:600}
.card .v{font-size:22px;font-weight:600;font-variant-numeric:tabular-nums}
.card .s{color:#57606a;font-size:12px}
table{border-collapse:collapse;min-width:min(100%,640px);font-size:13px;margin:6px 0}
th,td{padding:5px 8px;border-bottom:1px solid #eaecef;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
figure{margin:10px 0 18px}
figcaption{font-weight:600;margin-bottom:4px}
svg.chart{display:block;width:100%;height:auto;background:#fff}
svg.chart text{font-size:11px;fill:#424a53}
svg.chart text.label{font-size:12px;fill:#1f2328}
svg.chart text.nodata{font-size:14px;font-style:italic;fill:#6e7781}
.case{border:1px solid #e1e4e8;border-left:4px solid #e15759;border-radius:6px;padding:10px 14px;
  margin:12px 0}
.meta{color:#57606a;font-size:12px}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.pair h4{margin:6px 0 4px;font-size:13px}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f8fa;border:1px solid #eaecef;
  border-radius:4px;padding:8px;margin:0;max-height:340px;overflow:auto;
  font:12px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.tag{display:inline-block;padding:0 6px;border-radius:10px;background:#eef1f4;font-size:12px}
@media (max-width:760px){.pair{grid-template-columns:1fr}}
)css";
  std::string s = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  s += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  // No favicon request: the page must load with no network and no failed requests.
  s += "<link rel=\"icon\" href=\"data:,\">\n";
  s += "<title>" + escape(title) + "</title>\n<style>" + kCss + "</style>\n</head>\n<body>\n";
  s += "<header><div class=\"wrap\"><h1>" + escape(title) + "</h1>";
  if (!subtitle.empty()) s += "<p>" + escape(subtitle) + "</p>";
  s += "</div></header>\n<main>\n";
  return s;
}

std::string pageEnd() { return "</main>\n</body>\n</html>\n"; }

// ---- Time ----

std::string utcDate(int64_t unix_ms) {
  return policies::periodKey(policies::Window::kDay, std::clamp(unix_ms, -kMaxAbsMs, kMaxAbsMs));
}

std::string utcDateTime(int64_t unix_ms) {
  unix_ms = std::clamp(unix_ms, -kMaxAbsMs, kMaxAbsMs);
  int64_t in_day = ((unix_ms % kMsPerDay) + kMsPerDay) % kMsPerDay;
  char buf[16];
  std::snprintf(buf, sizeof(buf), " %02d:%02d UTC", static_cast<int>(in_day / kMsPerHour),
                static_cast<int>(in_day % kMsPerHour / kMsPerMinute));
  return utcDate(unix_ms) + buf;
}

size_t TimeBuckets::indexOf(int64_t unix_ms) const {
  if (count == 0 || width_ms <= 0) return 0;
  unix_ms = std::clamp(unix_ms, -kMaxAbsMs, kMaxAbsMs);
  if (unix_ms < start_ms) return 0;
  int64_t i = (unix_ms - start_ms) / width_ms;
  return static_cast<size_t>(std::min<int64_t>(i, static_cast<int64_t>(count) - 1));
}

std::string TimeBuckets::label(size_t i) const {
  int64_t t = start_ms + static_cast<int64_t>(i) * width_ms;
  if (width_ms % kMsPerDay == 0) return utcDate(t);
  std::string s = utcDateTime(t);
  return s.substr(0, s.size() - 4);  // without " UTC"
}

std::string TimeBuckets::widthText() const {
  auto unit = [](int64_t n, const char* one) {
    return std::to_string(n) + " " + one + (n == 1 ? "" : "s");
  };
  if (width_ms > 0 && width_ms % kMsPerDay == 0) return unit(width_ms / kMsPerDay, "day");
  if (width_ms > 0 && width_ms % kMsPerHour == 0) return unit(width_ms / kMsPerHour, "hour");
  if (width_ms > 0 && width_ms % kMsPerMinute == 0) return unit(width_ms / kMsPerMinute, "minute");
  return std::to_string(width_ms) + " ms";
}

TimeBuckets makeBuckets(int64_t first_ms, int64_t last_ms, int64_t bucket_ms, size_t max_count) {
  first_ms = std::clamp(first_ms, -kMaxAbsMs, kMaxAbsMs);
  last_ms = std::clamp(last_ms, -kMaxAbsMs, kMaxAbsMs);
  if (last_ms < first_ms) std::swap(first_ms, last_ms);
  if (bucket_ms <= 0) bucket_ms = kMsPerDay;
  bucket_ms = std::min(bucket_ms, kMaxAbsMs);
  max_count = std::max<size_t>(1, max_count);
  auto floorTo = [](int64_t t, int64_t w) {
    int64_t q = t / w;
    if (t % w != 0 && t < 0) --q;
    return q * w;
  };
  TimeBuckets b;
  b.width_ms = bucket_ms;
  b.start_ms = floorTo(first_ms, b.width_ms);
  int64_t n = (last_ms - b.start_ms) / b.width_ms + 1;
  if (n > static_cast<int64_t>(max_count)) {
    // Wider buckets, a whole multiple of the asked width, so that day buckets stay days.
    int64_t factor = (n + static_cast<int64_t>(max_count) - 1) / static_cast<int64_t>(max_count);
    b.width_ms = factor > 2 * kMaxAbsMs / bucket_ms ? 2 * kMaxAbsMs : bucket_ms * factor;
    b.start_ms = floorTo(first_ms, b.width_ms);
    n = (last_ms - b.start_ms) / b.width_ms + 1;
  }
  b.count = static_cast<size_t>(std::clamp<int64_t>(n, 1, static_cast<int64_t>(max_count)));
  return b;
}

}  // namespace quality::svg
