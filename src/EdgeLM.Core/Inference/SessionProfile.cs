using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace EdgeLM.Inference;

/// <summary>The parts of a forward pass that <see cref="SessionProfile"/> times separately.</summary>
public enum ProfilePart
{
    Embedding,
    /// <summary>The norm when run on its own (an observer attached, or fewer than 4 rows); otherwise it is done by
    /// the next matmul's workers while they prepare their input and counted in that matmul (see QuantizeInput).</summary>
    AttentionNorm,
    QkvMatMul,
    RopeAndCache,
    Attention,
    AttentionOutput,
    FfnNorm,
    /// <summary>Includes SwiGlu: the workers apply it to their gate/up slices as soon as they are computed.</summary>
    GateUpMatMul,
    /// <summary>Zero in this engine's forward pass (SwiGlu is fused into GateUpMatMul); kept so the rows of a
    /// profile table stay the same across versions.</summary>
    SwiGlu,
    DownMatMul,
    OutputNorm,
    OutputHead,
    /// <summary>Inside the matmul parts: preparing the input rows (the preceding RMS norm when fused, then quantizing to the kernel's activation format).</summary>
    QuantizeInput,
    /// <summary>Inside the pooled parts: the calling thread waiting for workers after finishing its own share.</summary>
    PoolWait,
}

/// <summary>
/// Wall-clock time per part of the forward pass, summed over every call while attached to a session through
/// <see cref="InferenceSession.Profile"/> (null, the default, costs one branch per part). Where time goes in
/// decode: matmuls bound by memory bandwidth, serial work, or threads waiting at the barrier after each job.
/// Not thread-safe; attach one profile to one session at a time.
/// </summary>
public sealed class SessionProfile
{
    private static readonly int PartCount = Enum.GetValues<ProfilePart>().Length;
    private readonly long[] _ticks = new long[PartCount];

    /// <summary>Forward calls and tokens processed while attached.</summary>
    public long Forwards { get; private set; }
    public long Tokens { get; private set; }
    /// <summary>Stopwatch ticks spent inside Forward/ForwardAll in total.</summary>
    public long TotalTicks { get; private set; }

    public TimeSpan Elapsed(ProfilePart part) => Stopwatch.GetElapsedTime(0, _ticks[(int)part]);
    public TimeSpan Total => Stopwatch.GetElapsedTime(0, TotalTicks);

    public void Reset()
    {
        Array.Clear(_ticks);
        Forwards = 0;
        Tokens = 0;
        TotalTicks = 0;
    }

    internal void Add(ProfilePart part, long ticks) => _ticks[(int)part] += ticks;

    internal void AddForward(int tokens, long ticks)
    {
        Forwards++;
        Tokens += tokens;
        TotalTicks += ticks;
    }

    /// <summary>A table: per part, milliseconds per token and share of the total; nested parts are indented.</summary>
    public override string ToString()
    {
        var text = new StringBuilder();
        double total = Math.Max(1, TotalTicks);
        double msPerTick = 1000.0 / Stopwatch.Frequency;
        double perToken = Tokens > 0 ? 1.0 / Tokens : 0;
        var inv = CultureInfo.InvariantCulture;
        text.AppendLine(inv, $"profile: {Forwards} forward calls, {Tokens} tokens, {TotalTicks * msPerTick:F1} ms");
        text.AppendLine("  part                 ms/token       share");
        long accounted = 0;
        for (int p = 0; p < PartCount; p++)
        {
            var part = (ProfilePart)p;
            bool nested = part is ProfilePart.QuantizeInput or ProfilePart.PoolWait;
            if (!nested) accounted += _ticks[p];
            string name = nested ? "  " + part : part.ToString();
            text.AppendLine(inv, $"  {name,-18} {_ticks[p] * msPerTick * perToken,10:F3} {_ticks[p] / total,10:P1}");
        }
        long other = TotalTicks - accounted;
        text.AppendLine(inv, $"  {"(other)",-18} {other * msPerTick * perToken,10:F3} {other / total,10:P1}");
        return text.ToString();
    }
}
