using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Benchmarks;

/// <summary>Random weights quantized with the reference quantizer into 64-byte aligned native memory, like a mapped model.</summary>
public static unsafe class WeightFactory
{
    /// <summary>The caller disposes the buffer after the last use of the tensor.</summary>
    public static (Tensor Tensor, NativeBuffer Buffer) Create(GgmlType type, int outRows, int inCols, ulong seed = 42)
    {
        long rowBytes = GgmlTypeInfo.RowBytes(type, inCols);
        var buffer = new NativeBuffer(rowBytes * outRows);
        byte* basePtr = buffer.Pointer;
        const int RowsPerChunk = 256;
        int chunks = (outRows + RowsPerChunk - 1) / RowsPerChunk;
        // Chunks are independent, so quantizing the 136M-value output head takes seconds, not a minute.
        Parallel.For(0, chunks, chunk =>
        {
            int first = chunk * RowsPerChunk, rows = Math.Min(RowsPerChunk, outRows - first);
            var values = new float[(long)rows * inCols];
            FillRandom(values, seed + (ulong)chunk);
            var dst = new Span<byte>(basePtr + first * rowBytes, checked((int)(rows * rowBytes)));
            Quantize.Rows(type, values, inCols, dst);
        });
        var tensor = new Tensor($"bench.{type}.{outRows}x{inCols}", type, [inCols, outRows], basePtr, buffer.Length);
        return (tensor, buffer);
    }

    /// <summary>Roughly the spread of trained transformer weights (|w| mostly below 0.1), with a few outliers per row.</summary>
    public static void FillRandom(Span<float> values, ulong seed)
    {
        ulong s = seed * 0x9E3779B97F4A7C15UL + 1;
        for (int i = 0; i < values.Length; i++)
        {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17; // xorshift64
            float u = (s >> 40) * (1f / (1 << 24)) - 0.5f;
            values[i] = (i % 97 == 0 ? 0.8f : 0.08f) * u;
        }
    }
}
