using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace EdgeLM.Evaluation;

/// <summary>Writes results.json and the per-item samples in lm-evaluation-harness's layouts.</summary>
public static class EvalReport
{
    public sealed record RunInfo(string Model, string ModelArgs, double? Limit, string EdgeLmVersion, DateTimeOffset Date, int? NumFewShot);

    public static void WriteResults(Stream stream, IReadOnlyList<TaskResult> tasks, RunInfo info)
    {
        using var w = new Utf8JsonWriter(stream, JsonOptions.Indented);
        w.WriteStartObject();
        w.WriteStartObject("results");
        foreach (var t in tasks)
        {
            w.WriteStartObject(t.Task.Name);
            w.WriteString("alias", t.Task.Name);
            w.WriteNumber("acc,none", t.Acc);
            WriteStderr(w, "acc_stderr,none", t.AccStderr);
            w.WriteNumber("acc_norm,none", t.AccNorm);
            WriteStderr(w, "acc_norm_stderr,none", t.AccNormStderr);
            w.WriteEndObject();
        }
        w.WriteEndObject();
        w.WriteStartObject("group_subtasks");
        foreach (var t in tasks) { w.WriteStartArray(t.Task.Name); w.WriteEndArray(); }
        w.WriteEndObject();
        w.WriteStartObject("versions");
        foreach (var t in tasks) w.WriteNumber(t.Task.Name, t.Task.Version);
        w.WriteEndObject();
        w.WriteStartObject("n-shot");
        foreach (var t in tasks) w.WriteNumber(t.Task.Name, t.NumFewShot);
        w.WriteEndObject();
        w.WriteStartObject("higher_is_better");
        foreach (var t in tasks)
        {
            w.WriteStartObject(t.Task.Name);
            w.WriteBoolean("acc", true);
            w.WriteBoolean("acc_norm", true);
            w.WriteEndObject();
        }
        w.WriteEndObject();
        w.WriteStartObject("n-samples");
        foreach (var t in tasks)
        {
            w.WriteStartObject(t.Task.Name);
            w.WriteNumber("original", t.OriginalCount);
            w.WriteNumber("effective", t.Samples.Count);
            w.WriteEndObject();
        }
        w.WriteEndObject();
        w.WriteStartObject("config");
        w.WriteString("model", "edgelm");
        w.WriteString("model_args", info.ModelArgs);
        w.WriteString("model_path", info.Model);
        w.WriteString("batch_size", "1");
        if (info.Limit is double limit) w.WriteNumber("limit", limit); else w.WriteNull("limit");
        if (info.NumFewShot is int k) w.WriteNumber("num_fewshot", k); else w.WriteNull("num_fewshot");
        w.WriteNumber("fewshot_seed", EvalTask.FewShotSeed);
        w.WriteEndObject();
        w.WriteString("edgelm_version", info.EdgeLmVersion);
        w.WriteString("date", info.Date.ToString("O", System.Globalization.CultureInfo.InvariantCulture));
        w.WriteNumber("date_unix", info.Date.ToUnixTimeMilliseconds() / 1000.0);
        w.WriteEndObject();
    }

    private static void WriteStderr(Utf8JsonWriter w, string name, double? value)
    {
        if (value is double v) w.WriteNumber(name, v); else w.WriteString(name, "N/A");
    }

    /// <summary>
    /// One JSON line per item, as lm-eval's samples_&lt;task&gt;.jsonl: resps and filtered_resps hold
    /// [loglikelihood, is_greedy] as Python str() of each value, the way lm-eval sanitizes them.
    /// </summary>
    public static void WriteSamples(Stream stream, TaskResult task)
    {
        foreach (var s in task.Samples)
        {
            using var buffer = new MemoryStream();
            using (var w = new Utf8JsonWriter(buffer, JsonOptions.Writer))
            {
                w.WriteStartObject();
                w.WriteString("task", task.Task.Name);
                w.WriteNumber("doc_id", s.Doc.DocId);
                w.WritePropertyName("doc");
                using (var doc = JsonDocument.Parse(s.Doc.DocJson)) doc.RootElement.WriteTo(w);
                w.WriteNumber("target", s.Doc.Gold);
                w.WriteStartArray("arguments");
                for (int i = 0; i < s.Continuations.Count; i++)
                {
                    w.WriteStartArray();
                    w.WriteStringValue(s.Context);
                    w.WriteStringValue(s.Continuations[i]);
                    w.WriteEndArray();
                }
                w.WriteEndArray();
                w.WriteStartArray("resps");
                foreach (var r in s.Results) { w.WriteStartArray(); WritePair(w, r); w.WriteEndArray(); }
                w.WriteEndArray();
                w.WriteStartArray("filtered_resps");
                foreach (var r in s.Results) WritePair(w, r);
                w.WriteEndArray();
                w.WriteString("filter", "none");
                w.WriteStartArray("metrics");
                w.WriteStringValue("acc");
                w.WriteStringValue("acc_norm");
                w.WriteEndArray();
                w.WriteString("prompt_hash", Sha256Hex(s.Context));
                w.WriteString("target_hash", Sha256Hex(s.Doc.Gold.ToString(System.Globalization.CultureInfo.InvariantCulture)));
                w.WriteNumber("acc", s.Acc);
                w.WriteNumber("acc_norm", s.AccNorm);
                w.WriteEndObject();
            }
            buffer.WriteByte((byte)'\n');
            buffer.Position = 0;
            buffer.CopyTo(stream);
        }
    }

    private static void WritePair(Utf8JsonWriter w, Loglikelihood r)
    {
        w.WriteStartArray();
        w.WriteStringValue(PythonText.FloatRepr(r.LogLikelihood));
        w.WriteStringValue(r.IsGreedy ? "True" : "False");
        w.WriteEndArray();
    }

    /// <summary>lm-eval's hash_string: SHA-256 of the UTF-8 text, lower-case hex.</summary>
    public static string Sha256Hex(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
}
