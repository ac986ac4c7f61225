using EdgeLM.Inference;
using EdgeLM.Models;
using EdgeLM.Tests.Support;

namespace EdgeLM.Tests.Integration;

public class SyntheticModelTests(SyntheticFixture fixture) : IClassFixture<SyntheticFixture>
{
    private static readonly int[] Ids = [1, 17, 300, 42, 42, 511, 0, 99, 256, 257, 3, 128];

    private static float[] AllLogits(string path)
    {
        using var model = ModelLoader.Load(path);
        using var session = new InferenceSession(model.Config, model.Weights, 64, threads: 2);
        var logits = new float[Ids.Length * model.Config.VocabSize];
        session.ForwardAll(Ids, logits);
        return logits;
    }

    [Fact]
    public void GgufAndHuggingFaceFolderGiveIdenticalLogits()
    {
        var gguf = AllLogits(fixture.GgufPath);
        var hf = AllLogits(fixture.HfDir);
        Assert.Equal(gguf.Length, hf.Length);
        Assert.True(gguf.AsSpan().SequenceEqual(hf), "logits differ between the GGUF file and the Hugging Face folder");
        Assert.Contains(gguf, v => v != 0f);
    }

    [Fact]
    public void BothLayoutsLoadTheSameConfig()
    {
        using var a = ModelLoader.Load(fixture.GgufPath);
        using var b = ModelLoader.Load(fixture.HfDir);
        Assert.Equal(SyntheticFixture.Config.HiddenSize, a.Config.HiddenSize);
        Assert.Equal(a.Config with { Name = "" }, b.Config with { Name = "", BosTokenId = a.Config.BosTokenId, EosTokenId = a.Config.EosTokenId });
    }

    [Fact]
    public void SameSeedGeneratesTheSameTextAndDifferentSeedsDiffer()
    {
        using var model = ModelLoader.Load(fixture.GgufPath);
        var tokenizer = ModelTokenizers.Require(model);
        string Generate(ulong seed)
        {
            using var session = new InferenceSession(model.Config, model.Weights, 128, threads: 2);
            var generator = new Generator(session, tokenizer);
            var text = new System.Text.StringBuilder();
            var options = new GenerationOptions
            {
                MaxNewTokens = 24,
                StopAtEndOfGeneration = false,
                Sampling = new SamplingOptions { Temperature = 1.5f, TopK = 0, TopP = 1f, MinP = 0f, Seed = seed },
            };
            var r = generator.Generate(tokenizer.Encode("hello"), options, s => text.Append(s));
            Assert.Equal(24, r.GeneratedTokens);
            return string.Join(",", r.Tokens);
        }
        Assert.Equal(Generate(5), Generate(5));
        Assert.NotEqual(Generate(5), Generate(6));
    }
}
