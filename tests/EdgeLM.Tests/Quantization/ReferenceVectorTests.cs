using System.Runtime.InteropServices;
using System.Security.Cryptography;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Tests.Quantization;

/// <summary>
/// Byte-for-byte agreement with llama.cpp. The expected SHA-256 digests were produced by feeding
/// <see cref="ReferenceInput"/> to ggml's quantize_row_*_ref and dequantize_row_* (ggml-quants.c compiled with
/// gcc -O2 for x86-64, i.e. without FMA contraction, as ggml-base is built) and hashing their output.
/// The input uses only integer arithmetic and IEEE basic operations, so it is the same on every platform.
/// </summary>
public class ReferenceVectorTests
{
    private const string InputSha256 = "a558db249b55c7ba638f27195b166936bbca11bff2848cfdcc81bf2c2a052db5";

    /// <summary>32 super-blocks: Gaussian-like rows at several scales with outliers, and degenerate blocks.</summary>
    internal static float[] ReferenceInput()
    {
        const int blocks = 32;
        var x = new float[blocks * 256];
        ulong state = 0x9E3779B97F4A7C15UL;
        uint Next() { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return (uint)(state >> 32); }
        float Uniform() => (Next() >> 8) * (1f / 16777216f); // exact: 24-bit integer times 2^-24
        float[] scales = [1f, 0.001f, 30f, 0.0625f, 1e-5f, 7.5f, 0.3f, 1e-3f];

        for (int b = 0; b < blocks; b++)
        {
            Span<float> block = x.AsSpan(256 * b, 256);
            float scale = scales[b % scales.Length];
            switch (b / 8)
            {
                case 0 or 1: // sum of four uniforms: bell-shaped, mean 0
                    for (int i = 0; i < 256; i++) block[i] = (Uniform() + Uniform() + Uniform() + Uniform() - 2f) * scale;
                    for (int k = 0; k < 3; k++) block[(int)(Next() % 256)] *= 12f;
                    break;
                case 2: // uniform, one-sided and grid-aligned values that hit rounding ties
                    for (int i = 0; i < 256; i++)
                    {
                        block[i] = (b % 4) switch
                        {
                            0 => Uniform() * scale,
                            1 => -Uniform() * 3f * scale,
                            2 => ((int)(Next() % 17) - 8) * 0.5f,
                            _ => (int)(Next() % 255) - 127,
                        };
                    }
                    break;
                default: // degenerate: zeros, a constant, sparse, tiny
                    for (int i = 0; i < 256; i++)
                    {
                        block[i] = (b % 4) switch
                        {
                            0 => 0f,
                            1 => 0.75f,
                            2 => i % 37 == 0 ? Uniform() - 0.5f : 0f,
                            _ => (Uniform() - 0.5f) * 1e-9f,
                        };
                    }
                    break;
            }
        }
        return x;
    }

    private static string Sha256(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    [Fact]
    public void InputIsTheOneTheDigestsWereMadeFrom() =>
        Assert.Equal(InputSha256, Sha256(MemoryMarshal.AsBytes(ReferenceInput().AsSpan())));

    // Q8_1 has no dequantizer in ggml. For Q8_K's all-zero block ggml leaves bsums unwritten; the reference run
    // zeroed them, as we do.
    [Theory]
    [InlineData(GgmlType.F16, "307141c1435e29ec29200a34039de42001257a0d10a05103748f65e195900ce5", null)]
    [InlineData(GgmlType.BF16, "2de2e498ee0701c332f8bb7c9c8aca4fe819f4068eeb390114f160ccbbdeebc2", null)]
    [InlineData(GgmlType.Q4_0, "32cd3088da5136f4bda7aa94e3bf995b846cbcbd3a8aa8471294ea968c00c870", "4d2dd83abd80ed0841b3f6939b529fb5972734f276e8a4b7caf33eac2257821f")]
    [InlineData(GgmlType.Q4_1, "6e5fc188de72d2ca05b4cd46032b10a44ab5e8435145619dd74b167785582d59", "ed99213f9538fdf8abcf8b9e77954d3c5721cb15df68f7f7c6e07b8c4d561dd9")]
    [InlineData(GgmlType.Q5_0, "24b35bf9b877c727047adfaddf44b0e863342a9b36cadb739d28264040be9bc4", "d7231c59d0d97d9374b8d645cad0e9770c062f13f174606a94fee0b90aa27c65")]
    [InlineData(GgmlType.Q5_1, "d1807091deecaa4d72f0113d38b611f852de59e69de0ad602c0e5b53a3e1fa55", "67added374069decd6fdac77a6ab0ef6eb3b68c3a022a8def8981006827351ac")]
    [InlineData(GgmlType.Q8_0, "5dba96ff2276e9ccfc15712ccd960ed6d46d8f6cc15dac453559d48a2ac93b4c", "130b4450e6d70235f8c17b92fa4a9c9e5a8bccde1d19b90f8253c3fe6aefc85e")]
    [InlineData(GgmlType.Q8_1, "f7f0e0d10d51003c16a121cee064d8268fc2e63c0f82dfd4fab2b7fd9e9f5548", null)]
    [InlineData(GgmlType.Q2_K, "81bf220960dbd459e631cba6c8e1a10c6e91360cd7b8670d0d71b535a08aba0e", "1f3bf3f2120c3c43c9bb33fb5d78c0cbd7302b72645b4a91a400366cba4ad350")]
    [InlineData(GgmlType.Q3_K, "6a2d15b2331b4cb790fba37cb1339d4647c802fc44924c8d462a7b79438e406e", "598a8e2fd5200e131e7d78665b606e95a354215e26196579bc786b2a135b1b57")]
    [InlineData(GgmlType.Q4_K, "cfce3767fa53cb521a5dce884121c17248c6e4c1b1ca42e40e354737d6e1e204", "4fa7bb92f06bbd9731ecc25611793f2d7502f804b8fa74c343b714ae194b735d")]
    [InlineData(GgmlType.Q5_K, "5e29908e823efc32564287989e2d5895679143376b197c82c6b09426578fca44", "585fabebe222218482e6ba464653a2e102eb1bef74189d625529ce2d0c7e349a")]
    [InlineData(GgmlType.Q6_K, "26de52225d92d344165c0602675864c9fff5cd87a0f056da11fed97e2ae2edf8", "d7bc496c8486aadcea9db1316ed5d7258ecf45b50d07db9608a334494b0f48d6")]
    [InlineData(GgmlType.Q8_K, "458735207485a302d74cde3d7e44de8b63eb7304af9e3a92ce91a76a6d4f9659", "caa4bae9f04920b91591ee30c4d074b936150fc7afa1746d5f97751055901f0a")]
    public void QuantizeAndDequantizeMatchLlamaCpp(GgmlType type, string quantizedSha256, string? dequantizedSha256)
    {
        float[] x = ReferenceInput();
        byte[] quantized = Quantize.Rows(type, x, x.Length);
        Assert.Equal(quantizedSha256, Sha256(quantized));
        if (dequantizedSha256 is null) return;
        var y = new float[x.Length];
        Dequantize.Row(type, quantized, y);
        Assert.Equal(dequantizedSha256, Sha256(MemoryMarshal.AsBytes(y.AsSpan())));
    }
}
