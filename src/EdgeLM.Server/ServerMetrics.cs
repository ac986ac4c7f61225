using System.Collections.Concurrent;
using System.Globalization;
using System.Text;

namespace EdgeLM.Serving;

/// <summary>Request counters and the Prometheus text exposition of them and of the scheduler's state.</summary>
public sealed class ServerMetrics
{
    private readonly ConcurrentDictionary<(string Endpoint, int Status), long> _requests = new();

    public void CountRequest(string endpoint, int status) =>
        _requests.AddOrUpdate((endpoint, status), 1, (_, n) => n + 1);

    public long RequestCount(string endpoint, int status) => _requests.TryGetValue((endpoint, status), out long n) ? n : 0;

    public string Render(SequenceScheduler scheduler)
    {
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        sb.AppendLine("# HELP edgelm_requests_total HTTP requests by endpoint and status code.");
        sb.AppendLine("# TYPE edgelm_requests_total counter");
        foreach (var ((endpoint, status), n) in _requests.OrderBy(kv => kv.Key.Endpoint, StringComparer.Ordinal).ThenBy(kv => kv.Key.Status))
            sb.Append(inv, $"edgelm_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}\n");
        Metric(sb, "edgelm_prompt_tokens_total", "counter", "Prompt tokens processed (prefill).", scheduler.PromptTokensTotal);
        Metric(sb, "edgelm_generated_tokens_total", "counter", "Tokens generated.", scheduler.GeneratedTokensTotal);
        Metric(sb, "edgelm_prefill_seconds_total", "counter", "Time spent in prefill.", scheduler.PrefillTimeTotal.TotalSeconds);
        Metric(sb, "edgelm_decode_seconds_total", "counter", "Time spent in decode steps.", scheduler.DecodeTimeTotal.TotalSeconds);
        Metric(sb, "edgelm_prefill_tokens_per_second", "gauge", "Prompt tokens per second of prefill, over the server's life.",
            Rate(scheduler.PromptTokensTotal, scheduler.PrefillTimeTotal));
        Metric(sb, "edgelm_decode_tokens_per_second", "gauge", "Generated tokens per second of one sequence's decode steps, over the server's life.",
            Rate(scheduler.GeneratedTokensTotal, scheduler.DecodeTimeTotal));
        Metric(sb, "edgelm_queue_length", "gauge", "Requests waiting for a sequence slot.", scheduler.QueueLength);
        Metric(sb, "edgelm_active_sequences", "gauge", "Sequences being generated.", scheduler.ActiveCount);
        Metric(sb, "edgelm_parallel_sequences", "gauge", "Sequence slots (--parallel).", scheduler.Parallel);
        Metric(sb, "edgelm_sessions_allocated", "gauge", "KV caches allocated (one per batch slot); reused across requests.", scheduler.SessionCount);
        Metric(sb, "edgelm_batch_steps_total", "counter", "Batched forward passes (one per step of all active sequences).", scheduler.StepsTotal);
        Metric(sb, "edgelm_batch_tokens_total", "counter", "Tokens run through the model over all steps (prompt chunks and decode tokens).", scheduler.StepTokensTotal);
        Metric(sb, "edgelm_batch_sequences_total", "counter", "Sequences summed over all steps; divided by edgelm_batch_steps_total, the mean batch size.", scheduler.StepSequencesTotal);
        Metric(sb, "edgelm_sequences_completed_total", "counter", "Sequences that finished.", scheduler.CompletedTotal);
        Metric(sb, "edgelm_sequences_cancelled_total", "counter", "Sequences cancelled by their client.", scheduler.CancelledTotal);
        sb.AppendLine("# HELP edgelm_batching_info How active sequences share the model: batched (one forward pass per step for all of them).");
        sb.AppendLine("# TYPE edgelm_batching_info gauge");
        sb.Append(inv, $"edgelm_batching_info{{mode=\"{scheduler.BatchingMode}\"}} 1\n");
        return sb.ToString();
    }

    private static double Rate(long tokens, TimeSpan time) => time > TimeSpan.Zero ? tokens / time.TotalSeconds : 0;

    private static void Metric(StringBuilder sb, string name, string type, string help, double value)
    {
        sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
        sb.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
        sb.Append(name).Append(' ').Append(value.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
    }
}
