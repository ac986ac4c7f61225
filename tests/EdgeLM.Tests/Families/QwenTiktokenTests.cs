using System.Text.Json;
using EdgeLM.Formats.Gguf;
using EdgeLM.Formats.HuggingFace;
using EdgeLM.Models;
using EdgeLM.Synthetic;
using EdgeLM.Tests.Support;
using EdgeLM.Tests.Tokenization;
using EdgeLM.Tokenization;

namespace EdgeLM.Tests.Families;

/// <summary>A qwen.tiktoken built from the Qwen2 vocabulary (rank = id below 151,643), loaded once.</summary>
public sealed class QwenTiktokenFixture
{
    public string Path { get; }
    public BpeTokenizer Tokenizer { get; }

    public QwenTiktokenFixture()
    {
        Path = System.IO.Path.Combine(TestPaths.NewTempDir(), "qwen.tiktoken");
        QwenTokenizer.Instance.WriteTiktoken(Path);
        Tokenizer = BpeTokenizer.FromTiktoken(Path);
    }
}

public sealed class QwenTiktokenTests(QwenTiktokenFixture fixture) : IClassFixture<QwenTiktokenFixture>
{
    private const int Ranks = 151643;

    /// <summary>(text, ids) from tools/tokenizer-vectors/generate-tiktoken.mjs (the tiktoken package).</summary>
    private static List<(string Text, int[] Ids)> TiktokenCorpus() =>
        File.ReadLines(TestPaths.TestData("tokenizer", "qwen-tiktoken-corpus.jsonl"))
            .Where(line => line.Length > 0)
            .Select(line =>
            {
                using var doc = JsonDocument.Parse(line);
                return (doc.RootElement.GetProperty("text").GetString()!,
                        doc.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray());
            })
            .ToList();

    [Fact]
    public void FileHasOneLinePerRankAndSpecialTokensFollow()
    {
        var lines = File.ReadAllLines(fixture.Path);
        Assert.Equal(Ranks, lines.Length);
        Assert.Equal($"{Convert.ToBase64String("!"u8.ToArray())} 0", lines[0]);
        var t = fixture.Tokenizer;
        Assert.True(t.IsRankBased);
        Assert.Equal(Ranks + 208, t.VocabSize);
        Assert.Equal(151643, t.TokenId("<|endoftext|>"));
        Assert.Equal(151644, t.TokenId("<|im_start|>"));
        Assert.Equal(151645, t.TokenId("<|im_end|>"));
        Assert.Equal(151646, t.TokenId("<|extra_0|>"));
        Assert.Equal(151850, t.TokenId("<|extra_204|>"));
        Assert.Equal(151643, t.EosId);
        Assert.False(t.AddBos);
        Assert.Contains(151645, t.EndOfGenerationIds);
        for (int id = 0; id < Ranks; id += 997) Assert.Equal(QwenTokenizer.Instance.TokenBytes(id), t.TokenBytes(id));
    }

    [Fact]
    public void MatchesTheTiktokenPackageOnTheCorpus()
    {
        var corpus = TiktokenCorpus();
        Assert.Equal(QwenTokenizer.Corpus.Count, corpus.Count);
        var failures = corpus.Where(c => !fixture.Tokenizer.Encode(c.Text).SequenceEqual(c.Ids))
            .Select(c => $"{JsonSerializer.Serialize(c.Text)}: expected [{string.Join(",", c.Ids)}] got [{string.Join(",", fixture.Tokenizer.Encode(c.Text))}]").ToList();
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(10)));
    }

    [Fact]
    public void EqualsQwen2OnTextWithoutQwen2OnlyAddedTokens()
    {
        int compared = 0;
        foreach (var (text, ids) in QwenTokenizer.Corpus)
        {
            // Qwen2 added tokens beyond <|im_end|> (<think>, <|fim_prefix|>, ...) are plain text to Qwen v1.
            if (ids.Any(id => id > 151645)) continue;
            Assert.Equal(ids, fixture.Tokenizer.Encode(text));
            Assert.Equal(text.Normalize(System.Text.NormalizationForm.FormC), fixture.Tokenizer.Decode(ids));
            compared++;
        }
        Assert.True(compared > 200, $"only {compared} corpus lines compared");
        int[] think = fixture.Tokenizer.Encode("<think>");
        Assert.True(think.Length > 1 && think.All(id => id < Ranks), "<think> is ordinary text to Qwen v1");
        Assert.Equal("<think>", fixture.Tokenizer.Decode(think));
    }

    [Fact]
    public void SpecialTokensAreParsedOnlyWhenAsked()
    {
        var t = fixture.Tokenizer;
        Assert.Equal([151644, 872, 198], t.Encode("<|im_start|>user\n"));
        Assert.DoesNotContain(151644, t.Encode("<|im_start|>user\n", parseSpecial: false));
        Assert.Equal([151646], t.Encode("<|extra_0|>"));
    }

    [Fact]
    public void GgufExportDerivesMergesThatTokenizeAlike()
    {
        // llama.cpp's converter turns the ranks into merges (QwenModel.bpe with max_rank); the merge-based
        // tokenizer read back from GGUF must give the rank tokenizer's ids.
        var md = new GgufMetadata();
        fixture.Tokenizer.WriteToGgufMetadata(md, padToVocabSize: 151936);
        var fromGguf = BpeTokenizer.FromGgufMetadata(md);
        Assert.False(fromGguf.IsRankBased);
        Assert.Equal(151936, fromGguf.VocabSize);
        Assert.Equal(Ranks - 256, fromGguf.MergeCount);
        foreach (var (text, ids) in TiktokenCorpus()) Assert.Equal(ids, fromGguf.Encode(text));
    }

    [Theory]
    [InlineData("IQ== 0\nIQ== 1\n", "twice")]
    [InlineData("IQ== 0\nIg== 2\n", "missing")]
    [InlineData("IQ== 0\n!!! 1\n", "base64")]
    [InlineData("IQ== zero\n", "rank")]
    [InlineData("IQ==\n", "base64 rank")]
    [InlineData("", "no tokens")]
    public void MalformedFilesAreInvalidData(string content, string mentioned)
    {
        string path = Path.Combine(TestPaths.NewTempDir(), "qwen.tiktoken");
        File.WriteAllText(path, content);
        var e = Assert.Throws<InvalidDataException>(() => BpeTokenizer.FromTiktoken(path));
        Assert.Contains(mentioned, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void HuggingFaceQwenFolderShipsQwenTiktokenAndTheLoaderFindsIt()
    {
        string root = TestPaths.NewTempDir();
        try { CheckQwenFolderAndGguf(Path.Combine(root, "hf")); }
        finally { Directory.Delete(root, recursive: true); }
    }

    private void CheckQwenFolderAndGguf(string dir)
    {
        var config = FamilyModelTests.TinyQwen1 with { VocabSize = 151936, HiddenSize = 32, HeadDim = 8, IntermediateSize = 16, LayerCount = 1 };
        SyntheticModel.WriteHuggingFace(dir, config, EdgeLM.Tensors.GgmlType.F16, seed: 3, tokenizerJson: TestPaths.QwenTokenizerJson);
        Assert.True(File.Exists(Path.Combine(dir, HfFolder.TiktokenFileName)));
        Assert.False(File.Exists(Path.Combine(dir, "tokenizer.json")));
        Assert.Equal(File.ReadAllBytes(fixture.Path), File.ReadAllBytes(Path.Combine(dir, HfFolder.TiktokenFileName)));
        using var model = ModelLoader.Load(dir);
        var tokenizer = ModelTokenizers.Require(model);
        Assert.True(tokenizer.IsRankBased);
        Assert.Equal("You are a helpful assistant.", ChatFormat.DefaultSystemPrompt(tokenizer.ChatTemplate));
        Assert.Equal(fixture.Tokenizer.Encode("Hello, world!"), tokenizer.Encode("Hello, world!"));

        // The GGUF of the same model carries the merges llama.cpp derives from the ranks, and Qwen's special tokens.
        string gguf = Path.Combine(dir, "..", "model.gguf");
        SyntheticModel.WriteGguf(gguf, config, EdgeLM.Tensors.GgmlType.F16, seed: 3, QwenTokenizer.Instance);
        using var fromGguf = ModelLoader.Load(gguf);
        var ggufTokenizer = ModelTokenizers.Require(fromGguf);
        Assert.False(ggufTokenizer.IsRankBased);
        Assert.Equal("<|extra_204|>", ggufTokenizer.TokenText(151850));
        const string text = "Qwen v1 — 通义千问 <|im_start|>user\n42 apples!<|im_end|>";
        Assert.Equal(tokenizer.Encode(text), ggufTokenizer.Encode(text));
    }
}
