// Small inline-SVG charts (bars, stacked bars, lines with axes and labels), number and time
// formatting, and the HTML page frame that the quality and cost reports (quality/report.h)
// share. The output is self-contained: no fonts, scripts, images or requests of any kind.
//
// Every chart is one <svg data-chart="<name>">. Each plotted mark (a bar, a bar segment, a
// point of a line) has class "mark" and carries data-label and data-value (and data-series in
// charts of several series, data-x on points), so that tests and scripts can read back what was
// plotted without parsing geometry. Reference lines (a budget) are <line class="ref"> with
// data-label and data-value. A chart with nothing to plot says "No data" and has no marks.
//
// All text is HTML-escaped here; callers pass plain text. Non-finite numbers are drawn and
// written as 0, so that no page ever shows "NaN" or "inf".
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace quality::svg {

// ---- Text and numbers ----

// Escapes `text` for element content and attribute values (& < > " '). Invalid UTF-8 and
// control characters other than tab, newline and carriage return become U+FFFD.
std::string escape(std::string_view text);
// The first `max_chars` code points of `text`, ending in "…" when it was cut.
std::string truncate(std::string_view text, size_t max_chars);

enum class Format {
  kCount,    // "1,234"
  kNumber,   // "1,234", "12.5", "0.0123"
  kUsd,      // "$1,234.56", "$0.00421"
  kPercent,  // a fraction shown as a percentage: 0.125 -> "12.5%"
};
// `v` for people (thousands separators, a sensible number of digits); "0" when not finite.
std::string format(double v, Format f);
// `v` for data-value attributes: "%.12g", "0" when not finite.
std::string attrNumber(double v);
// A colour of the shared palette (cycles).
std::string_view paletteColor(size_t i);

// ---- Charts ----

struct Bar {
  std::string label;
  double value = 0;
  std::string note;  // more text for the mark's tooltip ("" for none)
};

// One series of a stacked bar chart: a value for each category, in the categories' order.
struct Series {
  std::string name;
  std::vector<double> values;
  std::string color;  // "" = the palette's colour for the series' index
};

struct Point {
  double x = 0;
  double y = 0;
  std::string label;  // data-label; "" = the x value formatted with the chart's x format
};

struct Line {
  std::string name;
  std::vector<Point> points;  // drawn in this order
  std::string color;          // "" = the palette's colour for the line's index
  bool dashed = false;
};

// A horizontal line across the plot (a budget, a target).
struct RefLine {
  std::string name;
  double y = 0;
  std::string color;  // "" = dark red
};

struct Chart {
  std::string name;   // data-chart
  std::string title;  // the accessible name of the <svg>
  std::string x_label, y_label;
  Format x_format = Format::kNumber;  // line charts' x axis
  Format y_format = Format::kNumber;
  // Fixed axis ends; nullopt = from the data (y always includes 0).
  std::optional<double> x_min, x_max, y_max;
  // More attributes of the <svg> element (name, value), e.g. {"data-team", "research"};
  // names other than data-* and aria-* are dropped.
  std::vector<std::pair<std::string, std::string>> attributes;
  int width = 960;  // viewBox units; the <svg> scales to its container's width
  int height = 300;
};

// One bar per entry, in order; negative values hang below the zero line.
std::string barChart(const Chart& chart, const std::vector<Bar>& bars, std::string_view color = {});
// One stacked bar per category; every series gives a segment (marks: categories x series, zero
// segments included, so that their number does not depend on the data). Negative values are
// drawn as 0.
std::string stackedBarChart(const Chart& chart, const std::vector<std::string>& categories,
                            const std::vector<Series>& series);
// Lines through points, with a marker per point, and horizontal reference lines.
std::string lineChart(const Chart& chart, const std::vector<Line>& lines,
                      const std::vector<RefLine>& refs = {});

// ---- Page frame ----

// "<!DOCTYPE html>..." up to and including the opening <main>, with the shared inline CSS.
std::string pageStart(std::string_view title, std::string_view subtitle);
// Closes what pageStart() opened.
std::string pageEnd();

// ---- Time (UTC) ----

std::string utcDate(int64_t unix_ms);      // "2026-11-23"
std::string utcDateTime(int64_t unix_ms);  // "2026-11-23 15:04 UTC"

// Consecutive time buckets of equal width, aligned to the Unix epoch (a day bucket is a UTC
// day).
struct TimeBuckets {
  int64_t start_ms = 0;  // the first bucket's first millisecond
  int64_t width_ms = 0;
  size_t count = 0;

  // The bucket containing unix_ms, clamped to [0, count).
  size_t indexOf(int64_t unix_ms) const;
  // "2026-11-23" for whole-day widths, else "2026-11-23 15:00".
  std::string label(size_t i) const;
  // "1 day", "7 days", "6 hours", "30 minutes", "1500 ms".
  std::string widthText() const;
};
// Buckets of `bucket_ms` (a day when <= 0) covering [first_ms, last_ms]; widened to a multiple
// of bucket_ms when more than `max_count` buckets would be needed. Times beyond about 30,000
// years from 1970 are clamped.
TimeBuckets makeBuckets(int64_t first_ms, int64_t last_ms, int64_t bucket_ms,
                        size_t max_count = 60);

}  // namespace quality::svg
