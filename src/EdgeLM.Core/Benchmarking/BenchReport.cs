using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json;
using EdgeLM.Formats;
using EdgeLM.Inference;

namespace EdgeLM.Benchmarking;

/// <summary>
/// llama-bench's outputs for EdgeLM results: the markdown table (printed row by row as tests finish), and JSON / CSV
/// with one flat record per test. Field names are llama-bench's where it has the field (avg_ts, samples_ns,
/// model_type, ...) so the same scripts can read both; EdgeLM's additions are peak memory and CPU facts.
/// </summary>
public static class BenchReport
{
    public const string Backend = "CPU";

    /// <summary>"0.1.0" and the commit it was built from (or "unknown"), from the assembly's informational version.</summary>
    public static (string Version, string Commit) EngineVersion()
    {
        var assembly = typeof(BenchReport).Assembly;
        string info = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
            ?? assembly.GetName().Version?.ToString(3) ?? "0";
        int plus = info.IndexOf('+');
        if (plus < 0) return (info, "unknown");
        string commit = info[(plus + 1)..];
        return (info[..plus], commit.Length > 7 ? commit[..7] : commit);
    }

    // ---- markdown ----

    private static readonly (string Title, int Width, bool Right)[] Columns =
    [
        ("model", 30, false), ("size", 10, true), ("params", 10, true), ("backend", 10, false),
        ("threads", 7, true), ("type_kv", 7, false), ("test", 15, true), ("t/s", 20, true),
    ];

    /// <summary>The header and separator lines; the type_kv column appears only when it is not the default f32.</summary>
    public static string MarkdownHeader(bool showKvType)
    {
        var cols = VisibleColumns(showKvType);
        string header = "|" + string.Concat(cols.Select(c => " " + (c.Right ? c.Title.PadLeft(c.Width) : c.Title.PadRight(c.Width)) + " |"));
        string rule = "|" + string.Concat(cols.Select(c => " " + (c.Right ? new string('-', c.Width - 1) + ":" : new string('-', c.Width)) + " |"));
        return header + Environment.NewLine + rule;
    }

    public static string MarkdownRow(BenchModelInfo model, BenchResult result, bool showKvType)
    {
        var values = new Dictionary<string, string>
        {
            ["model"] = model.Description,
            ["size"] = FormatSize(model.SizeBytes),
            ["params"] = FormatParams(model.ParameterCount),
            ["backend"] = Backend,
            ["threads"] = result.Test.Threads.ToString(CultureInfo.InvariantCulture),
            ["type_kv"] = KvName(result.KvCacheType),
            ["test"] = result.Test.Name,
            ["t/s"] = string.Create(CultureInfo.InvariantCulture, $"{result.MeanTokensPerSecond:F2} ± {result.StdDevTokensPerSecond:F2}"),
        };
        return "|" + string.Concat(VisibleColumns(showKvType).Select(c =>
            " " + (c.Right ? values[c.Title].PadLeft(c.Width) : values[c.Title].PadRight(c.Width)) + " |"));
    }

    public static string Markdown(BenchModelInfo model, IReadOnlyList<BenchResult> results)
    {
        bool showKv = results.Any(r => r.KvCacheType != KvCacheType.F32);
        var sb = new StringBuilder(MarkdownHeader(showKv)).AppendLine();
        foreach (var r in results) sb.AppendLine(MarkdownRow(model, r, showKv));
        return sb.ToString();
    }

    private static (string Title, int Width, bool Right)[] VisibleColumns(bool showKvType) =>
        showKvType ? Columns : Columns.Where(c => c.Title != "type_kv").ToArray();

    /// <summary>llama-bench's size column: MiB below 1 GiB, GiB from there.</summary>
    public static string FormatSize(long bytes) => bytes < 1L << 30
        ? string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0 / 1024.0:F2} MiB")
        : string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0 / 1024.0 / 1024.0:F2} GiB");

    /// <summary>llama-bench's params column: millions below a billion, billions from there.</summary>
    public static string FormatParams(long parameters) => parameters < 1_000_000_000
        ? string.Create(CultureInfo.InvariantCulture, $"{parameters / 1e6:F2} M")
        : string.Create(CultureInfo.InvariantCulture, $"{parameters / 1e9:F2} B");

    public static string KvName(KvCacheType type) => type switch
    {
        KvCacheType.F32 => "f32",
        KvCacheType.F16 => "f16",
        _ => type.ToString().ToLowerInvariant(),
    };

    /// <summary>
    /// A tg test's distance from the memory-bound ceiling, e.g. "tg128 t=2: 336.4 MB read per token (weights and KV
    /// cache) x 62.2 t/s = 20.9 GB/s, 87% of the 24.1 GB/s measured read bandwidth"; null for pp tests.
    /// </summary>
    public static string? BandwidthLine(BenchResult r)
    {
        if (r.DecodeBytesPerToken <= 0) return null;
        double rate = r.DecodeBytesPerToken * r.MeanTokensPerSecond;
        string line = string.Create(CultureInfo.InvariantCulture,
            $"{r.Test.Name} t={r.Test.Threads}: {r.DecodeBytesPerToken / 1e6:F1} MB read per token (weights and KV cache) x {r.MeanTokensPerSecond:F1} t/s = {rate / 1e9:F1} GB/s");
        return r.ReadBandwidthBytesPerSecond > 0
            ? line + string.Create(CultureInfo.InvariantCulture, $", {100 * r.BandwidthUse:F0}% of the {r.ReadBandwidthBytesPerSecond / 1e9:F1} GB/s measured read bandwidth")
            : line;
    }

    // ---- records shared by JSON and CSV ----

    /// <summary>The fields of one test's record, in output order. Values are string, long, double, long[], double[] or string[].</summary>
    public static IReadOnlyList<KeyValuePair<string, object>> Record(BenchModelInfo model, CpuInfo cpu, BenchResult r)
    {
        var (version, commit) = EngineVersion();
        return
        [
            new("build_commit", commit),
            new("edgelm_version", version),
            new("cpu_info", cpu.ModelName),
            new("cpu_physical_cores", (long)cpu.PhysicalCores),
            new("cpu_logical_cores", (long)cpu.LogicalCores),
            new("cpu_isa", cpu.IsaFlags.ToArray()),
            new("cpu_int8_dot", cpu.IntegerDot),
            new("backends", Backend),
            new("model_filename", model.Path),
            new("model_type", model.Description),
            new("model_ftype", model.TypeName),
            new("model_size", model.SizeBytes),
            new("model_file_bytes", model.FileBytes),
            new("model_n_params", model.ParameterCount),
            new("n_threads", (long)r.Test.Threads),
            new("type_kv", KvName(r.KvCacheType)),
            new("n_prompt", (long)r.Test.PromptTokens),
            new("n_gen", (long)r.Test.GenTokens),
            new("test", r.Test.Name),
            new("test_time", r.StartedAt.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture)),
            new("repetitions", (long)r.SamplesNs.Length),
            new("avg_ns", (long)Math.Round(r.MeanNs)),
            new("stddev_ns", (long)Math.Round(r.StdDevNs)),
            new("avg_ts", r.MeanTokensPerSecond),
            new("stddev_ts", r.StdDevTokensPerSecond),
            new("samples_ns", r.SamplesNs),
            new("samples_ts", r.SamplesTokensPerSecond),
            new("peak_rss_bytes", r.PeakRssBytes),
            new("peak_rss_scope", r.PeakRssIsPerTest ? "test" : "process"),
            new("managed_allocated_bytes", r.AllocatedBytes),
            new("decode_bytes_per_token", r.DecodeBytesPerToken),
            new("read_bandwidth_bytes_per_s", r.ReadBandwidthBytesPerSecond),
            new("bandwidth_use", r.BandwidthUse),
        ];
    }

    /// <summary>A JSON array with one object per test, like llama-bench -o json.</summary>
    public static void WriteJson(Stream stream, BenchModelInfo model, CpuInfo cpu, IReadOnlyList<BenchResult> results)
    {
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        w.WriteStartArray();
        foreach (var r in results)
        {
            w.WriteStartObject();
            foreach (var (name, value) in Record(model, cpu, r))
            {
                w.WritePropertyName(name);
                switch (value)
                {
                    case string s: w.WriteStringValue(s); break;
                    case long l: w.WriteNumberValue(l); break;
                    case double d: w.WriteNumberValue(double.IsFinite(d) ? d : 0); break;
                    case long[] la: w.WriteStartArray(); foreach (long l in la) w.WriteNumberValue(l); w.WriteEndArray(); break;
                    case double[] da: w.WriteStartArray(); foreach (double d in da) w.WriteNumberValue(double.IsFinite(d) ? d : 0); w.WriteEndArray(); break;
                    case string[] sa: w.WriteStartArray(); foreach (string s in sa) w.WriteStringValue(s); w.WriteEndArray(); break;
                    default: throw new InvalidOperationException($"field {name} has unsupported type {value.GetType().Name}");
                }
            }
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.Flush();
        stream.Write("\n"u8);
    }

    /// <summary>CSV (RFC 4180) with a header and one row per test; lists are comma-joined inside a quoted field, as llama-bench does.</summary>
    public static void WriteCsv(Stream stream, BenchModelInfo model, CpuInfo cpu, IReadOnlyList<BenchResult> results)
    {
        var sb = new StringBuilder();
        bool header = true;
        foreach (var r in results)
        {
            var record = Record(model, cpu, r);
            if (header)
            {
                sb.AppendJoin(',', record.Select(f => f.Key)).Append('\n');
                header = false;
            }
            sb.AppendJoin(',', record.Select(f => CsvField(FormatValue(f.Value)))).Append('\n');
        }
        if (results.Count == 0) sb.Append("test\n");
        stream.Write(Encoding.UTF8.GetBytes(sb.ToString()));
    }

    public static void WriteJsonFile(string path, BenchModelInfo model, CpuInfo cpu, IReadOnlyList<BenchResult> results) =>
        AtomicFile.Write(path, fs => WriteJson(fs, model, cpu, results));

    public static void WriteCsvFile(string path, BenchModelInfo model, CpuInfo cpu, IReadOnlyList<BenchResult> results) =>
        AtomicFile.Write(path, fs => WriteCsv(fs, model, cpu, results));

    private static string FormatValue(object value) => value switch
    {
        string s => s,
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        long[] la => string.Join(",", la.Select(l => l.ToString(CultureInfo.InvariantCulture))),
        double[] da => string.Join(",", da.Select(d => d.ToString("R", CultureInfo.InvariantCulture))),
        string[] sa => string.Join(",", sa),
        _ => throw new InvalidOperationException($"unsupported field type {value.GetType().Name}"),
    };

    private static string CsvField(string s) =>
        s.AsSpan().IndexOfAny(",\"\n\r") >= 0 ? "\"" + s.Replace("\"", "\"\"") + "\"" : s;
}
