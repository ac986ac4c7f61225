using EdgeLM.Tensors;

namespace EdgeLM.Benchmarks;

/// <summary>
/// One matmul shape: a PyTorch-style [Out, In] weight of <see cref="Type"/> times <see cref="Tokens"/> input rows
/// (1 = GEMV, the decode step; more = GEMM, prompt processing).
/// </summary>
public sealed record MatMulCase(GgmlType Type, int Out, int In, int Tokens)
{
    /// <summary>Bytes of weights one call streams from memory.</summary>
    public long WeightBytes => GgmlTypeInfo.RowBytes(Type, In) * Out;

    /// <summary>Multiply-adds count as two operations.</summary>
    public double Operations => 2.0 * Out * In * Tokens;

    // BenchmarkDotNet shows this in the Case column and uses it in --filter names.
    public override string ToString() => $"{Type} {Out}x{In} n={Tokens}";

    public static readonly GgmlType[] Types =
    [
        GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
        GgmlType.Q4_K, GgmlType.Q6_K,
    ];

    /// <summary>K-quants, on the shapes where they matter: Q4_K_M of Qwen-1.8B / Qwen-7B is mostly Q4_K and Q6_K.</summary>
    public static readonly GgmlType[] KQuantTypes = [GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K];

    /// <summary>Qwen-1.8B attention (2048x2048) and ffn_up/gate (5504x2048), Qwen-7B ffn_down (4096x11008).</summary>
    public static readonly (int Out, int In)[] KQuantShapes = [(2048, 2048), (5504, 2048), (4096, 11008)];

    /// <summary>Qwen2.5-0.5B's shapes: ffn_gate/ffn_up, ffn_down and the tied output head (vocabulary x hidden).</summary>
    public static readonly (int Out, int In)[] GemvShapes = [(4864, 896), (896, 4864), (151936, 896)];

    /// <summary>Prompt-sized batches on the FFN shapes; the head is left out (logits of the last token only).</summary>
    public static readonly (int Out, int In)[] GemmShapes = [(4864, 896), (896, 4864)];

    public const int GemmTokens = 64;

    /// <summary>
    /// Every type on every shape its block size divides: K-quants need rows of a multiple of 256 values, which
    /// 896 is not (llama.cpp also falls back to another type for those tensors).
    /// </summary>
    public static IEnumerable<MatMulCase> Gemv() =>
        from t in Types from s in GemvShapes where Fits(t, s.In) select new MatMulCase(t, s.Out, s.In, 1);

    public static IEnumerable<MatMulCase> Gemm() =>
        from t in Types from s in GemmShapes where Fits(t, s.In) select new MatMulCase(t, s.Out, s.In, GemmTokens);

    /// <summary>Types that sessions repack into panels (EdgeLM.Kernels.Quantized.RepackedMatrix).</summary>
    public static bool Repackable(GgmlType type) => EdgeLM.Kernels.Quantized.RepackedMatrix.RecordBytes(type) > 0;

    /// <summary>Float weights (F16 is the unquantized baseline users bench first) at llama-bench's pp512 batch.</summary>
    public static readonly GgmlType[] FloatTypes = [GgmlType.F32, GgmlType.F16, GgmlType.BF16];

    public const int PrefillTokens = 512;

    /// <summary>
    /// The FFN shapes of the 0.5B at pp512, and Qwen-1.8B's 2048 x 2048 at 128 tokens: input rows 8 KB apart, which
    /// halve the tile's speed unless the matmul copies them at a non-aliasing stride (FloatPanelKernels.InputStride).
    /// </summary>
    public static IEnumerable<MatMulCase> FloatPrefill() =>
        (from t in FloatTypes from s in GemmShapes select new MatMulCase(t, s.Out, s.In, PrefillTokens))
        .Append(new MatMulCase(GgmlType.F16, 2048, 2048, 128));

    public static IEnumerable<MatMulCase> KQuantGemv() =>
        from t in KQuantTypes from s in KQuantShapes select new MatMulCase(t, s.Out, s.In, 1);

    /// <summary>Prefill on the 1.8B shapes (the 7B one would take seconds per call).</summary>
    public static IEnumerable<MatMulCase> KQuantGemm() =>
        from t in KQuantTypes from s in KQuantShapes.Take(2) select new MatMulCase(t, s.Out, s.In, GemmTokens);

    public static bool Fits(GgmlType type, int rowLength) => rowLength % GgmlTypeInfo.BlockSize(type) == 0;
}
