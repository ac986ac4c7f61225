using System.Globalization;
using System.Text.Json;
using EdgeLM.Formats;

namespace EdgeLM.Benchmarking;

/// <summary>
/// The benchmark report in optimum-benchmark's layout (benchmark_report.json): one object per target
/// (load_model, first_generate, prefill, decode, per_token, generate), each with memory, latency, throughput,
/// energy and efficiency (null when not measured). Memory is in MB of 10^6 bytes. EdgeLM adds a config object,
/// "batching", and the three numbers `edgelm score` reads at the top level.
/// </summary>
public static class OptimumReport
{
    public const string MemoryUnit = "MB";

    public static void WriteJson(Stream stream, OptimumResult r)
    {
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteStartObject("config");
        w.WriteString("scenario", "inference");
        w.WriteString("task", "text-generation");
        w.WriteString("backend", "edgelm");
        w.WriteString("edgelm_version", BenchReport.EngineVersion().Version);
        w.WriteString("model", r.ModelPath);
        w.WriteNumber("batch_size", r.Options.BatchSize);
        w.WriteNumber("sequence_length", r.Options.SequenceLength);
        w.WriteNumber("new_tokens", r.Options.NewTokens);
        w.WriteNumber("iterations", r.Options.Iterations);
        w.WriteNumber("duration", r.Options.DurationSeconds);
        w.WriteNumber("warmup_runs", r.Options.WarmupRuns);
        w.WriteNumber("threads", r.Options.Threads);
        w.WriteString("kv_cache_type", BenchReport.KvName(r.Options.KvCacheType));
        w.WriteNumber("seed", r.Options.Seed);
        w.WriteString("batching", r.Batching);
        w.WriteString("memory_peak_scope", r.MemoryPerPhase ? "phase" : "process");
        w.WriteString("cpu", CpuInfo.Current.Summary);
        w.WriteString("started_at", r.StartedAt.ToString("O", CultureInfo.InvariantCulture));
        w.WriteEndObject();

        Target(w, "load_model", r.LoadModel);
        Target(w, "first_generate", r.FirstGenerate);
        Target(w, "prefill", r.Prefill, ("token_throughput", "tokens/s", r.PrefillTokensPerSecond));
        Target(w, "decode", r.Decode);
        Target(w, "per_token", r.PerToken);
        Target(w, "generate", r.Generate);

        w.WriteString("batching", r.Batching);
        w.WriteNumber("prefill_tokens_per_second", r.PrefillTokensPerSecond);
        w.WriteNumber("decode_tokens_per_second", r.DecodeTokensPerSecond);
        w.WriteNumber("peak_memory_bytes", r.PeakMemoryBytes);
        w.WriteEndObject();
    }

    public static void WriteJsonFile(string path, OptimumResult result) => AtomicFile.Write(path, s => WriteJson(s, result));

    private static void Target(Utf8JsonWriter w, string name, OptimumMeasurement m, (string Name, string Unit, double Value)? extra = null)
    {
        w.WriteStartObject(name);
        if (m.MaxRamBytes is long ram)
        {
            w.WriteStartObject("memory");
            w.WriteString("unit", MemoryUnit);
            w.WriteNumber("max_ram", ram / 1e6);
            w.WriteNull("max_global_vram");
            w.WriteNull("max_process_vram");
            w.WriteNull("max_reserved");
            w.WriteNull("max_allocated");
            w.WriteEndObject();
        }
        else w.WriteNull("memory");
        if (m.Latency is { } l) Latency(w, l);
        else w.WriteNull("latency");
        if (m.Throughput is double t)
        {
            w.WriteStartObject("throughput");
            w.WriteString("unit", m.ThroughputUnit);
            w.WriteNumber("value", t);
            w.WriteEndObject();
        }
        else w.WriteNull("throughput");
        if (extra is var (xName, xUnit, xValue))
        {
            w.WriteStartObject(xName);
            w.WriteString("unit", xUnit);
            w.WriteNumber("value", xValue);
            w.WriteEndObject();
        }
        w.WriteNull("energy");
        w.WriteNull("efficiency");
        w.WriteEndObject();
    }

    private static void Latency(Utf8JsonWriter w, OptimumLatency l)
    {
        w.WriteStartObject("latency");
        w.WriteString("unit", OptimumLatency.Unit);
        w.WriteStartArray("values");
        foreach (double v in l.Values) w.WriteNumberValue(v);
        w.WriteEndArray();
        w.WriteNumber("count", l.Count);
        w.WriteNumber("total", l.Total);
        w.WriteNumber("mean", l.Mean);
        w.WriteNumber("p50", l.P50);
        w.WriteNumber("p90", l.P90);
        w.WriteNumber("p95", l.P95);
        w.WriteNumber("p99", l.P99);
        w.WriteNumber("stdev", l.Stdev);
        w.WriteNumber("stdev_", l.StdevPercent);
        w.WriteEndObject();
    }

    /// <summary>A few lines for the terminal, in the spirit of optimum-benchmark's log.</summary>
    public static string Summary(OptimumResult r)
    {
        static string S(double v) => v.ToString("F4", CultureInfo.InvariantCulture);
        static string F(double v) => v.ToString("F2", CultureInfo.InvariantCulture);
        var lines = new List<string>
        {
            $"model: {r.ModelPath}  batch {r.Options.BatchSize} ({r.Batching}), sequence {r.Options.SequenceLength}, new tokens {r.Options.NewTokens}, {r.Options.Threads} threads",
            $"load_model   latency {S(r.LoadModel.Latency!.Mean)} s",
            $"prefill      latency mean {S(r.Prefill.Latency!.Mean)} s (n={r.Prefill.Latency.Count}, p90 {S(r.Prefill.Latency.P90)})  throughput {F(r.Prefill.Throughput ?? 0)} samples/s, {F(r.PrefillTokensPerSecond)} tokens/s",
            $"decode       latency mean {S(r.Decode.Latency!.Mean)} s  throughput {F(r.DecodeTokensPerSecond)} tokens/s",
            $"per_token    latency mean {S(r.PerToken.Latency!.Mean)} s (n={r.PerToken.Latency.Count}, p90 {S(r.PerToken.Latency.P90)})",
            $"generate     latency mean {S(r.Generate.Latency!.Mean)} s (n={r.Generate.Latency.Count})  throughput {F(r.Generate.Throughput ?? 0)} samples/s",
            $"memory       max_ram {F(r.PeakMemoryBytes / 1e6)} MB{(r.MemoryPerPhase ? "" : " (process-wide peak)")}",
        };
        return string.Join(Environment.NewLine, lines);
    }
}
