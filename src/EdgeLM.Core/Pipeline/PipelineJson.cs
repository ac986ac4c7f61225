using System.Globalization;
using System.Text.Json;
using EdgeLM.Benchmarking;
using EdgeLM.Evaluation;

namespace EdgeLM.Pipeline;

/// <summary>report.json: the settings, every candidate's size, bench numbers (the optimum report's key figures and
/// the fields `edgelm score` reads), per-task accuracy and score terms, and the notes on what was skipped.</summary>
public static class PipelineJson
{
    public static void Write(Stream stream, PipelineResult r)
    {
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        var o = r.Options;
        w.WriteStartObject();
        w.WriteString("edgelm_version", BenchReport.EngineVersion().Version);
        w.WriteString("started_at", r.StartedAt.ToString("O", CultureInfo.InvariantCulture));
        w.WriteNumber("elapsed_seconds", Math.Round(r.Elapsed.TotalSeconds, 3));
        w.WriteString("cpu", CpuInfo.Current.Summary);
        w.WriteStartObject("config");
        w.WriteString("base_model", Path.GetFullPath(o.BaseModelPath));
        w.WriteStartArray("tasks");
        foreach (var t in o.Tasks) w.WriteStringValue(t);
        w.WriteEndArray();
        if (o.Limit is double l) w.WriteNumber("limit", l); else w.WriteNull("limit");
        w.WriteNumber("threads", o.Threads);
        w.WriteStartObject("bench");
        w.WriteString("scenario", "optimum");
        w.WriteNumber("batch_size", o.Bench.BatchSize);
        w.WriteNumber("sequence_length", o.Bench.SequenceLength);
        w.WriteNumber("new_tokens", o.Bench.NewTokens);
        w.WriteNumber("iterations", o.Bench.Iterations);
        w.WriteNumber("duration", o.Bench.DurationSeconds);
        w.WriteNumber("warmup_runs", o.Bench.WarmupRuns);
        w.WriteEndObject();
        w.WriteEndObject();

        w.WriteStartObject("score_config");
        Nullable(w, "p_max", r.PMax);
        Nullable(w, "p_min", r.PMin);
        if (r.PMaxSource != null) w.WriteString("p_max_source", r.PMaxSource); else w.WriteNull("p_max_source");
        if (r.PMinSource != null) w.WriteString("p_min_source", r.PMinSource); else w.WriteNull("p_min_source");
        w.WriteNumber("accuracy_weight", AicasScore.AccuracyWeight);
        w.WriteNumber("memory_weight", AicasScore.MemoryWeight);
        w.WriteNumber("prefill_weight", AicasScore.PrefillWeight);
        w.WriteNumber("decode_weight", AicasScore.DecodeWeight);
        w.WriteEndObject();

        w.WriteStartArray("candidates");
        foreach (var c in r.Candidates) Candidate(w, c);
        w.WriteEndArray();

        w.WriteStartArray("notes");
        foreach (var n in r.Notes) w.WriteStringValue(n);
        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void Candidate(Utf8JsonWriter w, CandidateResult c)
    {
        w.WriteStartObject();
        w.WriteString("name", c.Name);
        w.WriteString("kind", c.Kind);
        w.WriteString("model", c.ModelPath);
        w.WriteString("type", c.TypeName);
        w.WriteNumber("file_bytes", c.FileBytes);
        w.WriteNumber("parameters", c.ParameterCount);
        w.WriteNumber("bits_per_weight", c.BitsPerWeight);

        var b = c.Bench;
        w.WriteStartObject("bench");
        w.WriteString("batching", b.Batching);
        w.WriteNumber("prefill_tokens_per_second", b.PrefillTokensPerSecond);
        w.WriteNumber("prefill_samples_per_second", b.Prefill.Throughput ?? 0);
        w.WriteNumber("decode_tokens_per_second", b.DecodeTokensPerSecond);
        w.WriteNumber("peak_memory_bytes", b.PeakMemoryBytes);
        w.WriteNumber("load_model_seconds", b.LoadModel.Latency!.Mean);
        w.WriteNumber("prefill_latency_mean_seconds", b.Prefill.Latency!.Mean);
        w.WriteNumber("decode_latency_mean_seconds", b.Decode.Latency!.Mean);
        w.WriteNumber("per_token_latency_mean_seconds", b.PerToken.Latency!.Mean);
        w.WriteNumber("generate_latency_mean_seconds", b.Generate.Latency!.Mean);
        w.WriteNumber("prefill_count", b.Prefill.Latency.Count);
        w.WriteNumber("generate_count", b.Generate.Latency.Count);
        w.WriteEndObject();

        w.WriteStartObject("tasks");
        foreach (var t in c.Tasks)
        {
            w.WriteStartObject(t.Task);
            if (t.Skipped != null) w.WriteString("skipped", t.Skipped);
            else
            {
                w.WriteNumber("n", t.Items);
                Nullable(w, "acc", t.Acc);
                Nullable(w, "acc_stderr", t.AccStderr);
                Nullable(w, "acc_norm", t.AccNorm);
                Nullable(w, "acc_norm_stderr", t.AccNormStderr);
            }
            w.WriteEndObject();
        }
        w.WriteEndObject();
        Nullable(w, "average_accuracy", c.AverageAccuracy);

        if (c.Score is { } s)
        {
            w.WriteStartObject("score");
            Terms(w, "raw", s.Raw);
            Terms(w, "normalized", s.Normalized);
            w.WriteNumber("total", s.Score);
            w.WriteEndObject();
        }
        else w.WriteNull("score");
        w.WriteEndObject();
    }

    private static void Terms(Utf8JsonWriter w, string name, ScoreTerms t)
    {
        w.WriteStartObject(name);
        w.WriteNumber("accuracy", t.Accuracy);
        w.WriteNumber("memory", t.Memory);
        w.WriteNumber("prefill", t.Prefill);
        w.WriteNumber("decode", t.Decode);
        w.WriteEndObject();
    }

    private static void Nullable(Utf8JsonWriter w, string name, double? value)
    {
        if (value is double v && double.IsFinite(v)) w.WriteNumber(name, v);
        else w.WriteNull(name);
    }
}
