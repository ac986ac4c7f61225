using System.Runtime.Intrinsics;
using EdgeLM.Models;

namespace EdgeLM.Kernels;

/// <summary>
/// Rotary position embedding with cos/sin tables computed once (in double) for every position of a context:
/// pair i of a head is rotated by position * theta^(-2i/headDim).
/// </summary>
public sealed unsafe class Rope
{
    private readonly float[] _cos, _sin; // [position, headDim/2]

    public int HeadDim { get; }
    public int MaxPositions { get; }
    public RopeStyle Style { get; }

    public Rope(int headDim, int maxPositions, double theta, RopeStyle style)
    {
        if (headDim <= 0 || headDim % 2 != 0) throw new ArgumentException($"rope head dim {headDim} must be positive and even");
        if (maxPositions <= 0) throw new ArgumentException($"rope positions {maxPositions} must be positive");
        HeadDim = headDim;
        MaxPositions = maxPositions;
        Style = style;
        int half = headDim / 2;
        _cos = new float[(long)maxPositions * half];
        _sin = new float[(long)maxPositions * half];
        for (int i = 0; i < half; i++)
        {
            double frequency = Math.Pow(theta, -2.0 * i / headDim);
            for (int p = 0; p < maxPositions; p++)
            {
                double angle = p * frequency;
                _cos[(long)p * half + i] = (float)Math.Cos(angle);
                _sin[(long)p * half + i] = (float)Math.Sin(angle);
            }
        }
    }

    /// <summary>Rotates every head of <paramref name="x"/> (heads * HeadDim floats) in place for one position.</summary>
    public void Apply(Span<float> x, int heads, int position)
    {
        if (x.Length < heads * HeadDim) throw new ArgumentException($"rope: {x.Length} floats for {heads} heads of {HeadDim}");
        if ((uint)position >= (uint)MaxPositions) throw new ArgumentOutOfRangeException(nameof(position), $"position {position} outside the rope table of {MaxPositions}");
        fixed (float* px = x) Apply(px, heads, position);
    }

    internal void Apply(float* x, int heads, int position) => Apply(x, heads, position, vector: true);

    /// <summary>The scalar loop alone when <paramref name="vector"/> is false (tests compare the paths).</summary>
    internal void Apply(float* x, int heads, int position, bool vector)
    {
        int half = HeadDim / 2;
        fixed (float* cosTable = _cos, sinTable = _sin)
        {
            float* c = cosTable + (long)position * half, s = sinTable + (long)position * half;
            // Pair offsets: Neox rotates (i, i + half); Interleaved rotates (2i, 2i + 1).
            int firstStride = Style == RopeStyle.Neox ? 1 : 2;
            int partnerOffset = Style == RopeStyle.Neox ? half : 1;
            for (int h = 0; h < heads; h++)
            {
                float* head = x + h * HeadDim;
                int i = 0;
                if (vector && Style == RopeStyle.Neox && Vector256.IsHardwareAccelerated)
                {
                    // The halves are contiguous: eight pairs at a time, the same products and differences per element
                    // as the scalar loop (no fused multiply-add), so the bits do not depend on the path.
                    for (; i + 8 <= half; i += 8)
                    {
                        var x0 = Vector256.Load(head + i);
                        var x1 = Vector256.Load(head + half + i);
                        var cv = Vector256.Load(c + i);
                        var sv = Vector256.Load(s + i);
                        (x0 * cv - x1 * sv).Store(head + i);
                        (x0 * sv + x1 * cv).Store(head + half + i);
                    }
                }
                for (; i < half; i++)
                {
                    float* a = head + i * firstStride;
                    float* b = a + partnerOffset;
                    float x0 = *a, x1 = *b;
                    *a = x0 * c[i] - x1 * s[i];
                    *b = x0 * s[i] + x1 * c[i];
                }
            }
        }
    }
}
