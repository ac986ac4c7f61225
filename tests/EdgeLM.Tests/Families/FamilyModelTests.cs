using EdgeLM.Formats.HuggingFace;
using EdgeLM.Formats.Safetensors;
using EdgeLM.Inference;
using EdgeLM.Models;
using EdgeLM.Synthetic;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;
using EdgeLM.Tests.Inference;
using EdgeLM.Tests.Support;

namespace EdgeLM.Tests.Families;

/// <summary>Tiny Qwen (v1) and Qwen3 models written in each family's own GGUF and Hugging Face layouts.</summary>
public sealed class FamilyModelTests
{
    private static readonly int[] Tokens = [3, 17, 250, 42, 42, 199, 0, 7, 256, 258];

    internal static ModelConfig TinyQwen1 => new()
    {
        Architecture = "qwen", Name = "tiny-qwen1", VocabSize = 300, HiddenSize = 64, IntermediateSize = 96, LayerCount = 2,
        HeadCount = 4, KvHeadCount = 4, HeadDim = 16, ContextLength = 64, RopeTheta = 10000.0, RmsNormEps = 1e-6,
        RopeStyle = RopeStyle.Neox, TiedEmbeddings = false,
    };

    // head_dim 32 while hidden / heads is 12: Qwen3 takes the head size from the config, not from the hidden size.
    internal static ModelConfig TinyQwen3(bool tied) => new()
    {
        Architecture = "qwen3", Name = "tiny-qwen3", VocabSize = 300, HiddenSize = 48, IntermediateSize = 80, LayerCount = 2,
        HeadCount = 4, KvHeadCount = 2, HeadDim = 32, ContextLength = 64, RopeTheta = 1_000_000.0, RmsNormEps = 1e-6,
        RopeStyle = RopeStyle.Neox, TiedEmbeddings = tied, BosTokenId = 256, EosTokenId = 258,
    };

    public static TheoryData<string> Families => new() { "qwen", "qwen3", "qwen3-tied" };

    private static ModelConfig ConfigFor(string family) => family switch
    {
        "qwen" => TinyQwen1,
        "qwen3" => TinyQwen3(tied: false),
        _ => TinyQwen3(tied: true),
    };

    private static (string Gguf, string HfDir) Write(ModelConfig config, GgmlType type = GgmlType.F16)
    {
        string dir = TestPaths.NewTempDir();
        string gguf = Path.Combine(dir, "model.gguf"), hf = Path.Combine(dir, "hf");
        SyntheticModel.WriteGguf(gguf, config, type, seed: 11, tokenizer: null);
        SyntheticModel.WriteHuggingFace(hf, config, type, seed: 11, tokenizerJson: null);
        return (gguf, hf);
    }

    private static float[] AllLogits(LoadedModel model)
    {
        using var session = new InferenceSession(model.Config, model.Weights, 32, threads: 2);
        var logits = new float[Tokens.Length * model.Config.VocabSize];
        session.ForwardAll(Tokens, logits);
        return logits;
    }

    private static void AssertClose(double[] expected, ReadOnlySpan<float> actual, string where)
    {
        double maxDiff = 0, spread = expected.Max() - expected.Min();
        for (int i = 0; i < expected.Length; i++) maxDiff = Math.Max(maxDiff, Math.Abs(expected[i] - actual[i]));
        Assert.True(spread > 0, $"{where}: constant logits");
        Assert.True(maxDiff <= 2e-5 * spread, $"{where}: max |diff| {maxDiff:G3} vs spread {spread:G3}");
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void GgufAndHuggingFaceFolderGiveBitwiseIdenticalLogits(string family)
    {
        var config = ConfigFor(family);
        var (gguf, hf) = Write(config);
        using var a = ModelLoader.Load(gguf);
        using var b = ModelLoader.Load(hf);
        Assert.Equal(config.Architecture, a.Config.Architecture);
        Assert.Equal(a.Config with { Name = "", BosTokenId = null, EosTokenId = null }, b.Config with { Name = "", BosTokenId = null, EosTokenId = null });
        Assert.Equal(config.IntermediateSize, a.Config.IntermediateSize);
        Assert.Equal(config.HeadDim, b.Config.HeadDim);
        var fromGguf = AllLogits(a);
        var fromHf = AllLogits(b);
        Assert.Contains(fromGguf, v => v != 0f);
        Assert.True(fromGguf.AsSpan().SequenceEqual(fromHf), $"{family}: logits differ between the GGUF file and the Hugging Face folder");
    }

    [Fact]
    public void EachFamilyIsWrittenInItsOwnLayout()
    {
        var (qwenGguf, qwenHf) = Write(TinyQwen1);
        using (var gguf = EdgeLM.Formats.Gguf.GgufFile.Open(qwenGguf))
        {
            Assert.Contains("blk.0.attn_qkv.weight", gguf.Tensors.Keys);
            Assert.Contains("blk.0.attn_qkv.bias", gguf.Tensors.Keys);
            Assert.DoesNotContain("blk.0.attn_q.weight", gguf.Tensors.Keys);
            // llama.cpp's converter writes config.json's intermediate_size: twice the MLP width.
            Assert.Equal(2L * TinyQwen1.IntermediateSize, gguf.Metadata.GetInteger("qwen.feed_forward_length"));
            Assert.Equal(TinyQwen1.IntermediateSize, gguf.Tensors["blk.0.ffn_up.weight"].Shape[1]);
        }
        using (var st = SafetensorsFile.Open(Path.Combine(qwenHf, "model.safetensors")))
        {
            Assert.Contains("transformer.h.1.attn.c_attn.weight", st.Tensors.Keys);
            Assert.Contains("transformer.h.1.mlp.w2.weight", st.Tensors.Keys);
            Assert.Contains("transformer.wte.weight", st.Tensors.Keys);
            Assert.DoesNotContain(st.Tensors.Keys, k => k.StartsWith("model.", StringComparison.Ordinal));
        }
        var cfg = HfConfig.Load(Path.Combine(qwenHf, "config.json"));
        Assert.Equal("qwen", cfg.ModelType);
        Assert.Equal(2 * TinyQwen1.IntermediateSize, cfg.IntermediateSize);

        var (q3Gguf, q3Hf) = Write(TinyQwen3(tied: true));
        using (var gguf = EdgeLM.Formats.Gguf.GgufFile.Open(q3Gguf))
        {
            Assert.Equal(32L, gguf.Metadata.GetInteger("qwen3.attention.key_length"));
            Assert.Contains("blk.1.attn_k_norm.weight", gguf.Tensors.Keys);
            Assert.DoesNotContain("blk.0.attn_q.bias", gguf.Tensors.Keys);
            Assert.DoesNotContain("output.weight", gguf.Tensors.Keys);
        }
        using (var st = SafetensorsFile.Open(Path.Combine(q3Hf, "model.safetensors")))
            Assert.Contains("model.layers.0.self_attn.q_norm.weight", st.Tensors.Keys);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Qwen3MatchesTheFloat64ReferenceWithQkNorm(bool tied)
    {
        var (gguf, _) = Write(TinyQwen3(tied), GgmlType.F32);
        using var model = ModelLoader.Load(gguf);
        Assert.All(model.Weights.Layers, l => Assert.NotNull(l.QNorm));
        double[][] expected = new ReferenceModel(model.Config, model.Weights).Logits(Tokens);
        var actual = AllLogits(model);
        int v = model.Config.VocabSize;
        for (int p = 0; p < Tokens.Length; p++) AssertClose(expected[p], actual.AsSpan(p * v, v), $"position {p}");
    }

    [Fact]
    public void Qwen3WithoutQkNormWouldDiffer()
    {
        // Guards the test above: the norms are not identity-like, so skipping them changes the logits.
        var (gguf, _) = Write(TinyQwen3(tied: false), GgmlType.F32);
        using var model = ModelLoader.Load(gguf);
        var w = model.Weights;
        var stripped = new ModelWeights(model.Config with { Architecture = "qwen2" },
            model.Tensors.Where(t => !t.Key.EndsWith("attn_q_norm.weight", StringComparison.Ordinal) && !t.Key.EndsWith("attn_k_norm.weight", StringComparison.Ordinal))
                .ToDictionary(t => t.Key, t => t.Value));
        Assert.Null(stripped.Layers[0].QNorm);
        double[] with = new ReferenceModel(model.Config, w).Logits(Tokens)[^1];
        double[] without = new ReferenceModel(model.Config, stripped).Logits(Tokens)[^1];
        Assert.True(with.Zip(without).Max(p => Math.Abs(p.First - p.Second)) > 1e-3);
    }

    [Fact]
    public void Qwen3RequiresItsQkNorms()
    {
        var (gguf, _) = Write(TinyQwen3(tied: false), GgmlType.F32);
        using var model = ModelLoader.Load(gguf);
        var tensors = model.Tensors.Where(t => t.Key != "blk.1.attn_k_norm.weight").ToDictionary(t => t.Key, t => t.Value);
        var e = Assert.Throws<InvalidDataException>(() => new ModelWeights(model.Config, tensors));
        Assert.Contains("attn_k_norm", e.Message);
    }

    /// <summary>
    /// Qwen v1 computed straight from the Hugging Face tensors with modeling_qwen.py's semantics: c_attn's output is
    /// split into q, k, v (rows 0..d, d..2d, 2d..3d, each with its bias part), and QWenMLP is
    /// c_proj(w1(x) * silu(w2(x))). Nothing of the engine's renaming or splitting is used here.
    /// </summary>
    [Fact]
    public void Qwen1FusedQkvAndW1W2MatchADirectReference()
    {
        var config = TinyQwen1;
        var (_, hf) = Write(config, GgmlType.F32);
        int d = config.HiddenSize;
        ReferenceModel reference;
        using (var st = SafetensorsFile.Open(Path.Combine(hf, "model.safetensors")))
        {
            float[] T(string name) => Dequantize.ToFloat(st.Tensors[name]);
            var layers = new ReferenceModel.Layer[config.LayerCount];
            for (int l = 0; l < config.LayerCount; l++)
            {
                string p = $"transformer.h.{l}.";
                float[] cAttn = T(p + "attn.c_attn.weight"), cAttnBias = T(p + "attn.c_attn.bias");
                Assert.Equal(3 * d * d, cAttn.Length);
                float[] w1 = T(p + "mlp.w1.weight"), w2 = T(p + "mlp.w2.weight");
                layers[l] = new ReferenceModel.Layer(
                    AttnNorm: T(p + "ln_1.weight"),
                    Wq: cAttn[..(d * d)], Wk: cAttn[(d * d)..(2 * d * d)], Wv: cAttn[(2 * d * d)..],
                    Wo: T(p + "attn.c_proj.weight"),
                    Bq: cAttnBias[..d], Bk: cAttnBias[d..(2 * d)], Bv: cAttnBias[(2 * d)..],
                    FfnNorm: T(p + "ln_2.weight"),
                    Gate: w2, Up: w1, // silu is applied to w2(x), and w1(x) multiplies it
                    Down: T(p + "mlp.c_proj.weight"));
            }
            reference = new ReferenceModel(config, T("transformer.wte.weight"), T("transformer.ln_f.weight"), T("lm_head.weight"), layers);
        }
        double[][] expected = reference.Logits(Tokens);
        using var model = ModelLoader.Load(hf);
        var actual = AllLogits(model);
        int v = config.VocabSize;
        for (int p = 0; p < Tokens.Length; p++) AssertClose(expected[p], actual.AsSpan(p * v, v), $"position {p}");
    }

    [Fact]
    public unsafe void FusedQkvIsSplitIntoViewsOfTheMappedRows()
    {
        var (gguf, _) = Write(TinyQwen1);
        using var model = ModelLoader.Load(gguf);
        var fused = model.Tensors["blk.0.attn_qkv.weight"];
        var bias = model.Tensors["blk.0.attn_qkv.bias"];
        var layer = model.Weights.Layers[0];
        long stride = fused.RowStride;
        Assert.True(layer.Wq.Data == fused.Data);
        Assert.True(layer.Wk.Data == fused.Data + TinyQwen1.QDim * stride);
        Assert.True(layer.Wv.Data == fused.Data + (TinyQwen1.QDim + TinyQwen1.KvDim) * stride);
        Assert.Equal([TinyQwen1.HiddenSize, TinyQwen1.KvDim], layer.Wv.Shape);
        Assert.True(layer.Bv!.Data == bias.Data + (TinyQwen1.QDim + TinyQwen1.KvDim) * sizeof(float));
    }

    [Fact]
    public void QwenConfigJsonFieldsAreRead()
    {
        string dir = TestPaths.NewTempDir();
        string path = Path.Combine(dir, "config.json");
        File.WriteAllText(path, """
            {"architectures":["QWenLMHeadModel"],"model_type":"qwen","hidden_size":2048,"num_hidden_layers":24,
             "num_attention_heads":16,"kv_channels":128,"intermediate_size":11008,"layer_norm_epsilon":1e-06,
             "rotary_emb_base":10000,"seq_length":8192,"vocab_size":151936,"no_bias":true,"tie_word_embeddings":false,
             "use_dynamic_ntk":true,"use_logn_attn":true,"rotary_pct":1.0}
            """);
        var c = HfConfig.Load(path).ToModelConfig("x");
        Assert.Equal(5504, c.IntermediateSize);
        Assert.Equal(128, c.HeadDim);
        Assert.Equal(16, c.KvHeadCount);
        Assert.Equal(8192, c.ContextLength);
        Assert.Equal(10000.0, c.RopeTheta);
        Assert.Equal(1e-6, c.RmsNormEps);

        File.WriteAllText(path, """{"model_type":"qwen","hidden_size":64,"num_hidden_layers":1,"num_attention_heads":4,"intermediate_size":96,"vocab_size":300,"rotary_pct":0.5}""");
        Assert.Contains("rotary_pct", Assert.Throws<InvalidDataException>(() => HfConfig.Load(path)).Message);
        File.WriteAllText(path, """{"model_type":"qwen","hidden_size":64,"num_hidden_layers":1,"num_attention_heads":4,"intermediate_size":97,"vocab_size":300}""");
        Assert.Contains("intermediate_size", Assert.Throws<InvalidDataException>(() => HfConfig.Load(path)).Message);
        File.WriteAllText(path, """{"model_type":"qwen3","hidden_size":1024,"num_hidden_layers":1,"num_attention_heads":16,"num_key_value_heads":8,"intermediate_size":3072,"vocab_size":300}""");
        Assert.Equal(128, HfConfig.Load(path).HeadDim); // Qwen3Config's default, not 1024 / 16
    }

    [Theory]
    [InlineData("qwen-1.8b", "qwen", 2048, 5504, 24, 16, 16, 128, false)]
    [InlineData("qwen-7b", "qwen", 4096, 11008, 32, 32, 32, 128, false)]
    [InlineData("qwen3-0.6b", "qwen3", 1024, 3072, 28, 16, 8, 128, true)]
    [InlineData("qwen3-1.7b", "qwen3", 2048, 6144, 28, 16, 8, 128, true)]
    public void PresetsHaveTheReleasedShapes(string preset, string arch, int hidden, int mlp, int layers, int heads, int kvHeads, int headDim, bool tied)
    {
        var c = ModelPresets.Get(preset);
        Assert.Equal((arch, hidden, mlp, layers, heads, kvHeads, headDim, tied, 151936),
            (c.Architecture, c.HiddenSize, c.IntermediateSize, c.LayerCount, c.HeadCount, c.KvHeadCount, c.HeadDim, c.TiedEmbeddings, c.VocabSize));
        Assert.Contains(preset, ModelPresets.Names);
        c.Validate();
    }
}
