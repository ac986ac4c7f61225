using EdgeLM.Compression;
using EdgeLM.Models;
using EdgeLM.Synthetic;
using EdgeLM.Tensors;

namespace EdgeLM.Tests.Compression;

public class QuantizationPlannerTests
{
    /// <summary>The tensors of a real model as llama.cpp's converter stores them: F16 matrices, F32 vectors.</summary>
    private static List<TensorDescriptor> Shapes(ModelConfig c) =>
        SyntheticModel.Plan(c).Select(s => new TensorDescriptor(s.Name, s.Shape.Length == 1 ? GgmlType.F32 : GgmlType.F16, s.Shape)).ToList();

    private static IReadOnlyList<PlannedTensor> PlanFor(string preset, string type, params string[] overrides) =>
        QuantizationPlanner.Plan(ModelPresets.Get(preset), Shapes(ModelPresets.Get(preset)), LlamaFileTypes.Parse(type),
            overrides.Select(TensorTypeOverride.Parse).ToList());

    private static string Counts(IEnumerable<PlannedTensor> plan) =>
        string.Join(",", plan.GroupBy(p => p.Type).OrderBy(g => g.Key.ToString(), StringComparer.Ordinal).Select(g => $"{g.Key}:{g.Count()}"));

    private static GgmlType TypeOf(IReadOnlyList<PlannedTensor> plan, string name) => plan.Single(p => p.Name == name).Type;

    // Expected counts worked out by hand from llama.cpp's rules (use_more_bits(i, n) picks layers i < n/8,
    // i >= 7n/8 and every third layer between: 12 of 24, 14 of 28):
    //  0.5B: 24 layers, rows of 896 (not a multiple of 256: Q4_K->Q5_0, Q5_K->Q5_1, Q6_K->Q8_0), ffn_down rows
    //        of 4864 = 19*256, tied embedding (treated as the output head: Q8_0 since 896 % 256 != 0).
    //  1.5B: 28 layers, all rows multiples of 256, tied embedding (-> Q6_K).
    //  7B:   28 layers, all rows multiples of 256, separate output head (-> Q6_K), embedding keeps the default.
    // F32 = 5 vectors per layer (2 norms, 3 biases) + output_norm.
    [Theory]
    [InlineData("qwen2.5-0.5b", "q4_k_m", "F32:121,Q4_K:12,Q5_0:132,Q6_K:12,Q8_0:13")]  // the counts llama.cpp's file has
    [InlineData("qwen2.5-0.5b", "q4_k_s", "F32:121,Q4_K:21,Q5_0:140,Q5_1:4,Q5_K:3,Q8_0:1")]
    [InlineData("qwen2.5-0.5b", "q8_0", "F32:121,Q8_0:169")]
    [InlineData("qwen2.5-0.5b", "q4_0", "F32:121,Q4_0:168,Q8_0:1")]
    [InlineData("qwen2.5-0.5b", "q6_k", "F32:121,Q6_K:24,Q8_0:145")]
    [InlineData("qwen2.5-1.5b", "q4_k_m", "F32:141,Q4_K:168,Q6_K:29")]
    [InlineData("qwen2.5-1.5b", "q4_k_s", "F32:141,Q4_K:189,Q5_K:7,Q6_K:1")]
    [InlineData("qwen2.5-1.5b", "q8_0", "F32:141,Q8_0:197")]
    [InlineData("qwen2.5-1.5b", "q4_0", "F32:141,Q4_0:196,Q6_K:1")]
    [InlineData("qwen2.5-1.5b", "q6_k", "F32:141,Q6_K:197")]
    [InlineData("qwen2.5-7b", "q4_k_m", "F32:141,Q4_K:169,Q6_K:29")]
    [InlineData("qwen2.5-7b", "q4_k_s", "F32:141,Q4_K:190,Q5_K:7,Q6_K:1")]
    [InlineData("qwen2.5-7b", "q8_0", "F32:141,Q8_0:198")]
    [InlineData("qwen2.5-7b", "q4_0", "F32:141,Q4_0:197,Q6_K:1")]
    [InlineData("qwen2.5-7b", "q6_k", "F32:141,Q6_K:198")]
    [InlineData("qwen2.5-7b", "f16", "F16:198,F32:141")]
    public void TypeCountsMatchLlamaCppForRealShapes(string preset, string type, string expected) =>
        Assert.Equal(expected, Counts(PlanFor(preset, type)));

    [Fact]
    public void Q4KMGivesMoreBitsToTheSameLayersOfAttnVAndFfnDown()
    {
        var plan = PlanFor("qwen2.5-1.5b", "q4_k_m");
        int[] more = [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 24, 25, 26, 27];
        for (int i = 0; i < 28; i++)
        {
            var expected = more.Contains(i) ? GgmlType.Q6_K : GgmlType.Q4_K;
            Assert.Equal(expected, TypeOf(plan, $"blk.{i}.attn_v.weight"));
            Assert.Equal(expected, TypeOf(plan, $"blk.{i}.ffn_down.weight"));
            Assert.Equal(GgmlType.Q4_K, TypeOf(plan, $"blk.{i}.attn_q.weight"));
        }
    }

    [Fact]
    public void TiedEmbeddingGetsTheOutputTypeAndUntiedKeepsTheDefault()
    {
        var tied = PlanFor("qwen2.5-1.5b", "q4_k_m");
        Assert.Equal(GgmlType.Q6_K, TypeOf(tied, "token_embd.weight"));

        var config = ModelPresets.Get("qwen2.5-1.5b") with { TiedEmbeddings = false };
        var untied = QuantizationPlanner.Plan(config, Shapes(config), LlamaFileType.MostlyQ4_K_M);
        Assert.Equal(GgmlType.Q4_K, TypeOf(untied, "token_embd.weight"));
        Assert.Equal(GgmlType.Q6_K, TypeOf(untied, "output.weight"));
    }

    [Fact]
    public void Q8_0KeepsTheOutputHeadAtQ8_0()
    {
        var plan = PlanFor("qwen2.5-7b", "q8_0");
        Assert.Equal(GgmlType.Q8_0, TypeOf(plan, "output.weight"));
        Assert.Equal(GgmlType.Q8_0, TypeOf(plan, "token_embd.weight"));
    }

    [Fact]
    public void VectorsAndNormsKeepTheirTypeEvenWhenAnOverrideMatches()
    {
        var plan = PlanFor("qwen2.5-0.5b", "q4_0", ".*=q8_0");
        foreach (var p in plan.Where(p => p.Shape.Length == 1)) Assert.Equal(GgmlType.F32, p.Type);
        Assert.All(plan.Where(p => p.Shape.Length == 2), p => Assert.Equal(GgmlType.Q8_0, p.Type));
    }

    [Fact]
    public void FirstMatchingOverrideWinsAndFallbackStillApplies()
    {
        var plan = PlanFor("qwen2.5-0.5b", "q8_0", "token_embd=q8_0", "attn_v=q6_k", "attn=q4_0", "ffn_up=q4_k");
        Assert.Equal(GgmlType.Q8_0, TypeOf(plan, "token_embd.weight"));
        Assert.Equal(GgmlType.Q8_0, TypeOf(plan, "blk.3.attn_v.weight"));   // Q6_K does not fit rows of 896
        Assert.Equal(GgmlType.Q4_0, TypeOf(plan, "blk.3.attn_q.weight"));
        Assert.Equal(GgmlType.Q5_0, TypeOf(plan, "blk.3.ffn_up.weight"));   // Q4_K does not fit rows of 896
        Assert.Equal(GgmlType.Q8_0, TypeOf(plan, "blk.3.ffn_down.weight"));
        Assert.Contains("override", plan.Single(p => p.Name == "blk.3.attn_q.weight").Note);
    }

    [Fact]
    public void ManualOverrideOfAnAttnVSkipsTheLayerCounterAsInLlamaCpp()
    {
        // llama.cpp only advances its attn_v counter inside the recipe, which an override bypasses, so every later
        // layer is judged as the one before it: layer 3 takes layer 2's "more bits".
        var plan = PlanFor("qwen2.5-1.5b", "q4_k_m", @"blk\.0\.attn_v=q8_0");
        Assert.Equal(GgmlType.Q8_0, TypeOf(plan, "blk.0.attn_v.weight"));
        Assert.Equal(GgmlType.Q6_K, TypeOf(plan, "blk.3.attn_v.weight"));
        Assert.Equal(GgmlType.Q4_K, TypeOf(plan, "blk.5.attn_v.weight"));
        Assert.Equal(GgmlType.Q6_K, TypeOf(plan, "blk.6.attn_v.weight"));
    }

    [Fact]
    public void OrderIsLlamaCppsGlobalTensorsFirstThenByLayerNumber()
    {
        var config = ModelPresets.Get("tiny") with { LayerCount = 12, VocabSize = 300 };
        var plan = QuantizationPlanner.Plan(config, Shapes(config), LlamaFileType.MostlyQ8_0);
        var names = plan.Select(p => p.Name).ToList();
        Assert.Equal(["output.weight", "output_norm.weight", "token_embd.weight"], names.Take(3));
        Assert.True(names.IndexOf("blk.2.ffn_up.weight") < names.IndexOf("blk.10.attn_k.bias"));
        Assert.True(names.IndexOf("blk.10.attn_k.bias") < names.IndexOf("blk.10.attn_k.weight"));
    }

    [Fact]
    public void RowsThatFitNoBlockTypeFailClearly()
    {
        var config = ModelPresets.Get("tiny");
        var tensors = new List<TensorDescriptor> { new("blk.0.ffn_up.weight", GgmlType.F16, [100, 8]) };
        var e = Assert.Throws<InvalidDataException>(() => QuantizationPlanner.Plan(config, tensors, LlamaFileType.MostlyQ8_0));
        Assert.Contains("blk.0.ffn_up.weight", e.Message);
        // A k-quant falls back to a 32-block type and, when even that does not fit, to F16.
        var plan = QuantizationPlanner.Plan(config, tensors, LlamaFileType.MostlyQ4_K_S);
        Assert.Equal(GgmlType.F16, plan.Single().Type);
    }
}

public class QuantizeOptionParsingTests
{
    [Theory]
    [InlineData("q4_k_m", LlamaFileType.MostlyQ4_K_M)]
    [InlineData("Q4_K_M", LlamaFileType.MostlyQ4_K_M)]
    [InlineData("q4_k", LlamaFileType.MostlyQ4_K_M)]
    [InlineData("q3-k-l", LlamaFileType.MostlyQ3_K_L)]
    [InlineData("bf16", LlamaFileType.MostlyBF16)]
    public void FileTypesParse(string name, LlamaFileType expected) => Assert.Equal(expected, LlamaFileTypes.Parse(name));

    [Fact]
    public void FileTypeIdsAreLlamaCppsFtypeValues()
    {
        // llama.h: LLAMA_FTYPE_MOSTLY_Q8_0 = 7, Q4_K_M = 15, Q6_K = 18, BF16 = 32.
        Assert.Equal(7u, (uint)LlamaFileTypes.Parse("q8_0"));
        Assert.Equal(15u, (uint)LlamaFileTypes.Parse("q4_k_m"));
        Assert.Equal(18u, (uint)LlamaFileTypes.Parse("q6_k"));
        Assert.Equal(32u, (uint)LlamaFileTypes.Parse("bf16"));
    }

    [Theory]
    [InlineData("q9_0")]
    [InlineData("7")]
    [InlineData("")]
    public void UnknownFileTypesAreRejected(string name) =>
        Assert.Contains("unknown quantization type", Assert.Throws<ArgumentException>(() => LlamaFileTypes.Parse(name)).Message);

    [Theory]
    [InlineData("token_embd", "REGEX=TYPE")]
    [InlineData("=q8_0", "no tensor name pattern")]
    [InlineData("token_embd=", "no type")]
    [InlineData("token_embd=q4_k_m", "unknown tensor type")]
    [InlineData("token_embd=8", "unknown tensor type")]
    [InlineData("token_embd=q8_k", "unknown tensor type")]
    [InlineData("blk.(=q8_0", "invalid regular expression")]
    public void BadTensorTypeSpecsAreOneLineErrors(string spec, string expected)
    {
        var e = Assert.Throws<ArgumentException>(() => TensorTypeOverride.Parse(spec));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void TensorTypeRegexSearchesTheName()
    {
        var o = TensorTypeOverride.Parse(@"blk\.[0-3]\.ffn_(up|gate)=Q6_K");
        Assert.Equal(GgmlType.Q6_K, o.Type);
        Assert.True(o.Matches("blk.2.ffn_gate.weight"));
        Assert.False(o.Matches("blk.12.ffn_gate.weight"));
        Assert.False(o.Matches("blk.2.ffn_down.weight"));
    }

    [Fact]
    public void UnknownMethodsAndMissingCalibrationAreRejected()
    {
        Assert.Equal("rtn", TensorQuantizers.Create("RTN").Name);
        Assert.Equal("mse", TensorQuantizers.Create("mse").Name);
        Assert.Contains("--calib", Assert.Throws<ArgumentException>(() => TensorQuantizers.Create("gptq")).Message);
        Assert.Throws<ArgumentException>(() => TensorQuantizers.Create("magic"));
    }
}
