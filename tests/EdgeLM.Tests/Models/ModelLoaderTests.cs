using EdgeLM.Formats.Gguf;
using EdgeLM.Models;
using EdgeLM.Tensors;
using EdgeLM.Tests.Support;

namespace EdgeLM.Tests.Models;

public class ModelLoaderTests
{
    [Theory]
    [InlineData(false, long.MaxValue)]
    [InlineData(true, long.MaxValue)]
    [InlineData(false, 6000L)]
    public void GgufAndHfFolderGiveTheSameConfigAndBytes(bool tied, long maxShardBytes)
    {
        var model = new TinyModel(TinyModel.QwenConfig(tied));
        string dir = TestPaths.NewTempDir();
        string gguf = model.WriteGguf(Path.Combine(dir, "tiny.gguf"));
        string hf = model.WriteHf(Path.Combine(dir, "hf"), maxShardBytes);
        if (maxShardBytes < long.MaxValue) Assert.True(File.Exists(Path.Combine(hf, "model.safetensors.index.json")));

        using var a = ModelLoader.Load(gguf);
        using var b = ModelLoader.Load(hf);
        Assert.Equal(model.Config, a.Config);
        Assert.Equal(model.Config, b.Config);
        Assert.Equal("gguf", a.Format);
        Assert.Equal("hf", b.Format);
        Assert.Equal(new FileInfo(gguf).Length, a.FileBytes);
        Assert.Equal(Directory.GetFiles(hf, "*.safetensors").Sum(f => new FileInfo(f).Length), b.FileBytes);
        Assert.Null(b.TokenizerJsonPath);

        Assert.Equal(model.Tensors.Select(t => t.GgufName).Order(), a.Tensors.Keys.Order());
        Assert.Equal(model.Tensors.Select(t => t.GgufName).Order(), b.Tensors.Keys.Order());
        foreach (var t in model.Tensors)
        {
            foreach (var loaded in new[] { a.Tensors[t.GgufName], b.Tensors[t.GgufName] })
            {
                Assert.Equal(t.GgufName, loaded.Name);
                Assert.Equal(t.Type, loaded.Type);
                Assert.Equal(t.GgmlShape, loaded.Shape);
                Assert.Equal(t.Data, loaded.Bytes.ToArray());
            }
        }
        Assert.Equal(tied, ReferenceEquals(a.Weights.Output, a.Weights.TokenEmbedding));
        Assert.Equal(tied, ReferenceEquals(b.Weights.Output, b.Weights.TokenEmbedding));
        Assert.NotNull(a.Weights.Layers[1].Bq);

        // The synthesized metadata reads back to the same config, like a real GGUF's would.
        Assert.Equal(model.Config, ModelLoader.ConfigFromGguf(b.Metadata, b.Tensors));
        Assert.Equal("qwen2", b.Metadata.GetString("general.architecture"));
        Assert.Equal(32, b.Metadata.GetInteger("qwen2.embedding_length"));
    }

    [Fact]
    public void TiedCheckpointWithLmHeadCopyIgnoresTheCopy()
    {
        var model = new TinyModel(TinyModel.QwenConfig(tied: true));
        string hf = model.WriteHf(Path.Combine(TestPaths.NewTempDir(), "hf"), extraLmHead: true);
        using var m = ModelLoader.Load(hf);
        Assert.False(m.Tensors.ContainsKey("output.weight"));
        Assert.Same(m.Weights.TokenEmbedding, m.Weights.Output);
    }

    [Fact]
    public void HfFolderFileAndTokenizerAreFound()
    {
        var model = new TinyModel(TinyModel.QwenConfig());
        string hf = model.WriteHf(Path.Combine(TestPaths.NewTempDir(), "hf"));
        File.WriteAllText(Path.Combine(hf, "tokenizer.json"), "{}");
        using var m = ModelLoader.Load(Path.Combine(hf, "config.json"));
        Assert.Equal(Path.Combine(hf, "tokenizer.json"), m.TokenizerJsonPath);
        Assert.Equal(hf, m.SourcePath);
    }

    [Fact]
    public void VocabSizeComesFromTokensWhenPresent()
    {
        var model = new TinyModel(TinyModel.QwenConfig());
        string path = model.WriteGguf(Path.Combine(TestPaths.NewTempDir(), "t.gguf"), withTokens: true);
        using var m = ModelLoader.Load(path);
        Assert.Equal(48, m.Config.VocabSize);
        Assert.Equal(48, m.Metadata.GetStringArray("tokenizer.ggml.tokens")!.Length);
    }

    [Fact]
    public void GgufLlamaUsesInterleavedRope()
    {
        var cfg = TinyModel.QwenConfig() with { Architecture = "llama", RopeStyle = RopeStyle.Interleaved };
        var model = new TinyModel(cfg, biases: false);
        string path = model.WriteGguf(Path.Combine(TestPaths.NewTempDir(), "l.gguf"));
        using var m = ModelLoader.Load(path);
        Assert.Equal(cfg, m.Config);
        Assert.Null(m.Weights.Layers[0].Bq);
    }

    [Fact]
    public void QuantizedGgufLoads()
    {
        var cfg = TinyModel.QwenConfig() with { HiddenSize = 64, HeadCount = 4, KvHeadCount = 2, HeadDim = 16 };
        var model = new TinyModel(cfg, GgmlType.Q8_0);
        using var m = ModelLoader.Load(model.WriteGguf(Path.Combine(TestPaths.NewTempDir(), "q.gguf")));
        Assert.Equal(GgmlType.Q8_0, m.Weights.Layers[1].Down.Type);
        Assert.Equal(cfg, m.Config);
    }

    [Fact]
    public void UnsupportedArchitectureIsNamed()
    {
        string path = Path.Combine(TestPaths.NewTempDir(), "x.gguf");
        var w = new GgufWriter();
        w.Metadata.Set("general.architecture", GgufValue.Of("mamba"));
        w.Write(path);
        var e = Assert.Throws<InvalidDataException>(() => ModelLoader.Load(path));
        Assert.Contains("'mamba'", e.Message);
    }

    [Fact]
    public void MissingHyperParameterIsNamed()
    {
        string path = Path.Combine(TestPaths.NewTempDir(), "x.gguf");
        var w = new GgufWriter();
        w.Metadata.Set("general.architecture", GgufValue.Of("qwen2"));
        w.Metadata.Set("qwen2.embedding_length", GgufValue.Of(32u));
        w.Metadata.Set("qwen2.attention.head_count", GgufValue.Of(4u));
        w.AddTensor("token_embd.weight", GgmlType.F32, [32, 10], new byte[32 * 10 * 4]);
        w.Write(path);
        var e = Assert.Throws<InvalidDataException>(() => ModelLoader.Load(path));
        Assert.Contains("qwen2.feed_forward_length", e.Message);
    }

    [Fact]
    public void MissingTensorIsNamed()
    {
        var model = new TinyModel(TinyModel.QwenConfig());
        model.Tensors.RemoveAll(t => t.GgufName == "blk.1.ffn_up.weight");
        string path = model.WriteGguf(Path.Combine(TestPaths.NewTempDir(), "m.gguf"));
        var e = Assert.Throws<InvalidDataException>(() => ModelLoader.Load(path));
        Assert.Contains("blk.1.ffn_up.weight", e.Message);
    }

    [Fact]
    public void WrongPathsGiveClearErrors()
    {
        string dir = TestPaths.NewTempDir();
        var missing = Assert.Throws<FileNotFoundException>(() => ModelLoader.Load(Path.Combine(dir, "nope")));
        Assert.Contains("nope", missing.Message);

        var noConfig = Assert.Throws<FileNotFoundException>(() => ModelLoader.Load(dir));
        Assert.Contains("config.json", noConfig.Message);

        string junk = Path.Combine(dir, "junk.bin");
        File.WriteAllText(junk, "hello world");
        var e = Assert.Throws<InvalidDataException>(() => ModelLoader.Load(junk));
        Assert.Contains("neither a GGUF file nor a Hugging Face", e.Message);

        File.WriteAllText(Path.Combine(dir, "config.json"), """{"model_type":"qwen2","hidden_size":32,"intermediate_size":64,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":8}""");
        var noWeights = Assert.Throws<FileNotFoundException>(() => ModelLoader.Load(dir));
        Assert.Contains("model.safetensors", noWeights.Message);
    }
}
