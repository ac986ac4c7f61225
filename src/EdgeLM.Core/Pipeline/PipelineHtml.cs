using System.Globalization;
using System.Text;
using System.Xml.Linq;
using EdgeLM.Benchmarking;

namespace EdgeLM.Pipeline;

/// <summary>
/// report.html: one self-contained page (inline CSS and SVG, no scripts, nothing fetched) that is also well-formed
/// XML, so it opens offline in any browser and tests can parse it. Built with XElement so every text is escaped.
/// </summary>
public static class PipelineHtml
{
    private static readonly XNamespace H = "http://www.w3.org/1999/xhtml";
    private static readonly XNamespace Svg = "http://www.w3.org/2000/svg";
    private static readonly string[] Colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
    // HTML parsers ignore "/>" on these; every other element must be written with an end tag.
    private static readonly HashSet<string> VoidElements = ["meta", "br", "hr", "img", "link", "input"];

    private const string Css = """
        body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
        h1 { font-size: 1.6em; margin-bottom: 0.2em; }
        h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
        table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
        th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
        th { background: #f3f3f3; }
        td.name, th.name { text-align: left; font-weight: 600; }
        td.skip { color: #888; font-style: italic; text-align: left; }
        .meta { color: #555; font-size: 0.9em; }
        .charts { display: flex; flex-wrap: wrap; gap: 1.5em; }
        svg.chart { border: 1px solid #ddd; background: #fff; }
        svg .axis { stroke: #333; stroke-width: 1; }
        svg .grid { stroke: #eee; stroke-width: 1; }
        svg text { font-family: system-ui, sans-serif; font-size: 11px; fill: #333; }
        svg .title { font-size: 13px; font-weight: 600; }
        ul.notes li { margin: 0.2em 0; }
        """;

    public static void Write(Stream stream, PipelineResult r)
    {
        var bytes = Encoding.UTF8.GetBytes(Render(r));
        stream.Write(bytes);
    }

    public static string Render(PipelineResult r)
    {
        var o = r.Options;
        var body = E("body",
            E("h1", "EdgeLM compression pipeline"),
            E("p", new XAttribute("class", "meta"),
                $"base model {Path.GetFullPath(o.BaseModelPath)}; {r.Candidates.Count} candidates; tasks {string.Join(", ", o.Tasks)}" +
                $"{(o.Limit is double l ? $" (limit {Num(l, "0.###")} items)" : "")}; {o.Threads} threads; " +
                $"finished in {Num(r.Elapsed.TotalSeconds, "F0")} s on {CpuInfo.Current.Summary}; {r.StartedAt.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture)}; edgelm {BenchReport.EngineVersion().Version}"),
            E("h2", "Candidates"),
            CandidateTable(r),
            E("p", new XAttribute("class", "meta"),
                $"Speed: optimum-benchmark's text-generation scenario, batch {o.Bench.BatchSize} ({r.Candidates.FirstOrDefault()?.Bench.Batching ?? "sequential"}), " +
                $"random prompts of {o.Bench.SequenceLength} tokens, {o.Bench.NewTokens} new tokens, at least {o.Bench.Iterations} iterations and {Num(o.Bench.DurationSeconds, "0.##")} s per session. " +
                "Prefill tokens/s = batch × sequence / mean prefill latency; decode tokens/s = batch × (new tokens − 1) / mean decode latency. Memory: peak resident set, MB = 10^6 bytes."),
            E("h2", "Accuracy by task"),
            TaskTable(r),
            E("h2", "Score (AICAS 2025: 0.4 accuracy + 0.2 memory + 0.2 prefill + 0.2 decode)"),
            ScoreTable(r),
            E("h2", "Charts"),
            E("div", new XAttribute("class", "charts"),
                Chart("Accuracy against size", "size (MB)", r.Candidates.Select(c => (c.Name, (double)c.FileBytes / 1e6, c.AverageAccuracy)).ToList()),
                Chart("Accuracy against decode speed", "decode (tokens/s)", r.Candidates.Select(c => (c.Name, c.Bench.DecodeTokensPerSecond, c.AverageAccuracy)).ToList())),
            E("h2", "Notes"),
            E("ul", new XAttribute("class", "notes"), r.Notes.Count == 0 ? (object)E("li", "nothing skipped") : r.Notes.Select(n => E("li", n)).ToArray()));

        var html = E("html", new XAttribute("lang", "en"),
            E("head",
                E("meta", new XAttribute("charset", "utf-8")),
                E("meta", new XAttribute("name", "viewport"), new XAttribute("content", "width=device-width, initial-scale=1")),
                E("title", "EdgeLM pipeline report"),
                E("style", Css)),
            body);
        CloseEmpty(html);
        return "<!DOCTYPE html>\n" + html.ToString(SaveOptions.None) + "\n";
    }

    private static XElement CandidateTable(PipelineResult r)
    {
        var head = Row("th", "candidate", "type", "size (MB)", "bits/weight", "prefill (tokens/s)", "decode (tokens/s)", "peak memory (MB)", "avg acc", "score");
        var rows = r.Candidates.Select(c => E("tr",
            E("td", new XAttribute("class", "name"), c.Name),
            E("td", c.TypeName),
            E("td", Num(c.FileBytes / 1e6, "F1")),
            E("td", Num(c.BitsPerWeight, "F2")),
            E("td", Num(c.Bench.PrefillTokensPerSecond, "F2")),
            E("td", Num(c.Bench.DecodeTokensPerSecond, "F2")),
            E("td", Num(c.Bench.PeakMemoryBytes / 1e6, "F1")),
            E("td", c.AverageAccuracy is double a ? Num(a, "F4") : "n/a"),
            E("td", c.Kind == "baseline" ? "baseline" : c.Score is { } s ? Num(s.Score, "F4") : "n/a")));
        return E("table", E("thead", head), E("tbody", rows.ToArray()));
    }

    private static XElement TaskTable(PipelineResult r)
    {
        var tasks = r.Options.Tasks.Distinct().ToList();
        var header = new List<object> { E("th", new XAttribute("class", "name"), "candidate") };
        foreach (var t in tasks) { header.Add(E("th", $"{t} acc")); header.Add(E("th", $"{t} acc_norm")); }
        var rows = new List<object>();
        foreach (var c in r.Candidates)
        {
            var cells = new List<object> { E("td", new XAttribute("class", "name"), c.Name) };
            foreach (var t in tasks)
            {
                var outcome = c.Tasks.FirstOrDefault(x => x.Task == t);
                if (outcome is not { Evaluated: true })
                {
                    cells.Add(E("td", new XAttribute("class", "skip"), new XAttribute("colspan", "2"), outcome?.Skipped ?? PipelineRunner.NoDataNote));
                    continue;
                }
                cells.Add(E("td", $"{Num(outcome.Acc!.Value, "F4")} ± {Num(outcome.AccStderr ?? 0, "F4")}"));
                cells.Add(E("td", $"{Num(outcome.AccNorm!.Value, "F4")} ± {Num(outcome.AccNormStderr ?? 0, "F4")}"));
            }
            rows.Add(E("tr", cells.ToArray()));
        }
        int items = r.Candidates.SelectMany(c => c.Tasks).Where(t => t.Evaluated).Select(t => t.Items).DefaultIfEmpty(0).Max();
        return E("div",
            E("table", E("thead", E("tr", header.ToArray())), E("tbody", rows.ToArray())),
            E("p", new XAttribute("class", "meta"), $"lm-evaluation-harness definitions, zero-shot; ± is the standard error (sample standard deviation / √n); up to {items} items per task."));
    }

    private static XElement ScoreTable(PipelineResult r)
    {
        if (r.PMax is not double pMax || r.PMin is not double pMin || r.Candidates.All(c => c.Score == null))
            return E("p", new XAttribute("class", "meta"), "No score: " + (r.Notes.FirstOrDefault(n => n.StartsWith("score:", StringComparison.Ordinal)) ?? "not computed"));
        var head = Row("th", "candidate", "avg acc", "accuracy term", "memory term", "prefill term", "decode term",
            "accuracy (norm.)", "memory (norm.)", "prefill (norm.)", "decode (norm.)", "total");
        var rows = r.Candidates.Where(c => c.Score != null).Select(c =>
        {
            var s = c.Score!;
            return E("tr", E("td", new XAttribute("class", "name"), c.Name), E("td", Num(s.AverageAccuracy, "F4")),
                E("td", Num(s.Raw.Accuracy, "F4")), E("td", Num(s.Raw.Memory, "F4")), E("td", Num(s.Raw.Prefill, "F4")), E("td", Num(s.Raw.Decode, "F4")),
                E("td", Num(s.Normalized.Accuracy, "F4")), E("td", Num(s.Normalized.Memory, "F4")), E("td", Num(s.Normalized.Prefill, "F4")),
                E("td", Num(s.Normalized.Decode, "F4")), E("td", Num(s.Score, "F4")));
        });
        return E("div",
            E("table", E("thead", head), E("tbody", rows.ToArray())),
            E("p", new XAttribute("class", "meta"),
                $"P_max = {Num(pMax, "F4")} ({r.PMaxSource}); P_min = {Num(pMin, "F4")} ({r.PMinSource}). Terms: accuracy (P − P_min)/(P_max − P_min), 1 at P ≥ P_max; " +
                "memory 1 − M/M_baseline; prefill and decode 1 − T_baseline/T; each normalized by the best candidate's term when that is positive."));
    }

    /// <summary>A scatter chart: axes with ticks and labels, one labelled marker per candidate that has both values.</summary>
    internal static XElement Chart(string title, string xLabel, IReadOnlyList<(string Name, double X, double? Y)> points)
    {
        const double width = 520, height = 370, left = 64, right = 24, top = 44, bottom = 52;
        double plotW = width - left - right, plotH = height - top - bottom;
        var shown = points.Select((p, i) => (p.Name, p.X, p.Y, Color: Colors[i % Colors.Length]))
            .Where(p => p.Y is double y && double.IsFinite(y) && double.IsFinite(p.X)).ToList();
        var (xMin, xMax, xStep) = NiceRange(Padded(shown.Select(p => p.X).DefaultIfEmpty(0).Min(), shown.Select(p => p.X).DefaultIfEmpty(1).Max()));
        var (yMin, yMax, yStep) = NiceRange(Padded(shown.Select(p => p.Y!.Value).DefaultIfEmpty(0).Min(), shown.Select(p => p.Y!.Value).DefaultIfEmpty(1).Max()));
        double Px(double x) => left + (x - xMin) / (xMax - xMin) * plotW;
        double Py(double y) => top + plotH - (y - yMin) / (yMax - yMin) * plotH;

        var svg = new XElement(Svg + "svg",
            new XAttribute("class", "chart"), new XAttribute("width", Num(width, "0")), new XAttribute("height", Num(height, "0")),
            new XAttribute("viewBox", $"0 0 {Num(width, "0")} {Num(height, "0")}"), new XAttribute("role", "img"), new XAttribute("aria-label", title),
            S("title", title),
            S("text", new XAttribute("class", "title"), At("x", width / 2), At("y", 20), new XAttribute("text-anchor", "middle"), title));
        for (double x = xMin; x <= xMax + xStep / 2; x += xStep)
        {
            svg.Add(S("line", new XAttribute("class", "grid"), At("x1", Px(x)), At("x2", Px(x)), At("y1", top), At("y2", top + plotH)));
            svg.Add(S("line", new XAttribute("class", "axis"), At("x1", Px(x)), At("x2", Px(x)), At("y1", top + plotH), At("y2", top + plotH + 5)));
            svg.Add(S("text", new XAttribute("class", "tick"), At("x", Px(x)), At("y", top + plotH + 18), new XAttribute("text-anchor", "middle"), TickLabel(x, xStep)));
        }
        for (double y = yMin; y <= yMax + yStep / 2; y += yStep)
        {
            svg.Add(S("line", new XAttribute("class", "grid"), At("x1", left), At("x2", left + plotW), At("y1", Py(y)), At("y2", Py(y))));
            svg.Add(S("line", new XAttribute("class", "axis"), At("x1", left - 5), At("x2", left), At("y1", Py(y)), At("y2", Py(y))));
            svg.Add(S("text", new XAttribute("class", "tick"), At("x", left - 8), At("y", Py(y) + 4), new XAttribute("text-anchor", "end"), TickLabel(y, yStep)));
        }
        svg.Add(S("line", new XAttribute("class", "axis"), At("x1", left), At("x2", left + plotW), At("y1", top + plotH), At("y2", top + plotH)));
        svg.Add(S("line", new XAttribute("class", "axis"), At("x1", left), At("x2", left), At("y1", top), At("y2", top + plotH)));
        svg.Add(S("text", new XAttribute("class", "label"), At("x", left + plotW / 2), At("y", height - 12), new XAttribute("text-anchor", "middle"), xLabel));
        svg.Add(S("text", new XAttribute("class", "label"), new XAttribute("text-anchor", "middle"),
            new XAttribute("transform", $"translate(16 {Num(top + plotH / 2, "0.#")}) rotate(-90)"), "average accuracy (acc)"));
        if (shown.Count == 0)
            svg.Add(S("text", At("x", left + plotW / 2), At("y", top + plotH / 2), new XAttribute("text-anchor", "middle"), "no accuracy: no task had data"));
        foreach (var p in shown)
        {
            double cx = Px(p.X), cy = Py(p.Y!.Value);
            svg.Add(S("circle", new XAttribute("class", "marker"), new XAttribute("data-candidate", p.Name), At("cx", cx), At("cy", cy), At("r", 6),
                new XAttribute("fill", p.Color), new XAttribute("stroke", "#222"), new XAttribute("stroke-width", "1"),
                S("title", $"{p.Name}: {Num(p.X, "0.##")} {xLabel}, accuracy {Num(p.Y!.Value, "F4")}")));
            bool leftSide = cx > left + plotW * 0.75;
            svg.Add(S("text", new XAttribute("class", "marker-label"), At("x", cx + (leftSide ? -9 : 9)), At("y", cy - 8),
                new XAttribute("text-anchor", leftSide ? "end" : "start"), p.Name));
        }
        return svg;
    }

    /// <summary>Some room around the data so no marker sits on an axis or under the title.</summary>
    private static (double, double) Padded(double min, double max)
    {
        double pad = (max - min) * 0.06;
        // sizes, speeds and accuracies are never negative: no axis below 0 for them
        return (min >= 0 ? Math.Max(0, min - pad) : min - pad, max + pad);
    }

    internal static (double Min, double Max, double Step) NiceRange((double Min, double Max) range) => NiceRange(range.Min, range.Max);

    /// <summary>Axis bounds on multiples of a 1-2-5 step, with some room around a single value or a flat series.</summary>
    internal static (double Min, double Max, double Step) NiceRange(double min, double max)
    {
        if (!double.IsFinite(min) || !double.IsFinite(max)) (min, max) = (0, 1);
        if (max < min) (min, max) = (max, min);
        double span = max - min;
        if (span <= Math.Abs(max) * 1e-9 || span == 0)
        {
            double pad = Math.Abs(max) > 0 ? Math.Abs(max) * 0.1 : 0.5;
            min -= pad;
            max += pad;
            span = max - min;
        }
        double raw = span / 5;
        double magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double step = new[] { 1.0, 2.0, 5.0, 10.0 }.Select(m => m * magnitude).First(s => s >= raw);
        double lo = Math.Floor(min / step) * step, hi = Math.Ceiling(max / step) * step;
        if (hi - lo < step) hi = lo + step;
        return (lo, hi, step);
    }

    private static string TickLabel(double value, double step)
    {
        int decimals = Math.Max(0, (int)Math.Ceiling(-Math.Log10(step) + 1e-9));
        if (Math.Abs(value) < step * 1e-6) value = 0; // no "-0"
        return value.ToString("F" + Math.Min(decimals, 6), CultureInfo.InvariantCulture);
    }

    private static XElement Row(string cell, params string[] texts) => E("tr", texts.Select((t, i) =>
        (object)(i == 0 ? E(cell, new XAttribute("class", "name"), t) : E(cell, t))).ToArray());

    private static XElement E(string name, params object?[] content) => new(H + name, content);
    private static XElement S(string name, params object?[] content) => new(Svg + name, content);
    private static XAttribute At(string name, double value) => new(name, Num(value, "0.##"));
    private static string Num(double v, string format) => v.ToString(format, CultureInfo.InvariantCulture);

    private static void CloseEmpty(XElement root)
    {
        foreach (var e in root.DescendantsAndSelf())
            if (e.Name.Namespace == H && !e.Nodes().Any() && !VoidElements.Contains(e.Name.LocalName)) e.Add("");
    }
}
