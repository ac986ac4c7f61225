using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using EdgeLM.Formats.Gguf;
using EdgeLM.Models;
using EdgeLM.Serving;
using EdgeLM.Synthetic;
using EdgeLM.Tensors;
using EdgeLM.Tests.Families;
using EdgeLM.Tests.Support;
using EdgeLM.Tokenization;

namespace EdgeLM.Tests.Serving;

/// <summary>A tiny synthetic Qwen3 model served twice: with its thinking switch on by default, and with --no-think.</summary>
public sealed class ThinkingSwitchFixture : IAsyncLifetime
{
    // The part of Qwen/Qwen3-0.6B's chat template that reads the switch.
    public const string Qwen3Template =
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- if enable_thinking is defined and enable_thinking is false %}" +
        "{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}";

    private readonly string _dir = TestPaths.NewTempDir();
    public LoadedModel Model { get; private set; } = null!;
    public BpeTokenizer Qwen3Tokenizer { get; private set; } = null!;
    public BpeTokenizer PlainTokenizer { get; private set; } = null!;
    public EdgeLmServer Thinking { get; private set; } = null!;
    public EdgeLmServer NoThink { get; private set; } = null!;
    public EdgeLmServer NoSwitch { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var config = FamilyModelTests.TinyQwen3(tied: true) with { ContextLength = 256 };
        string path = Path.Combine(_dir, "tiny-qwen3.gguf");
        SyntheticModel.WriteGguf(path, config, GgmlType.F16, seed: 5, tokenizer: null);
        Model = ModelLoader.Load(path);
        PlainTokenizer = BpeTokenizer.CreateByteLevel(config.VocabSize);
        var md = new GgufMetadata();
        PlainTokenizer.WriteToGgufMetadata(md, config.VocabSize);
        md.Set("tokenizer.chat_template", GgufValue.Of(Qwen3Template));
        Qwen3Tokenizer = BpeTokenizer.FromGgufMetadata(md);
        var options = new ServerOptions { Port = 0, Parallel = 1, ContextLength = 128, Threads = 1, ModelId = "q3" };
        Thinking = new EdgeLmServer(Model, Qwen3Tokenizer, options);
        NoThink = new EdgeLmServer(Model, Qwen3Tokenizer, options with { EnableThinking = false });
        NoSwitch = new EdgeLmServer(Model, PlainTokenizer, options with { EnableThinking = false });
        await Thinking.StartAsync();
        await NoThink.StartAsync();
        await NoSwitch.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await Thinking.DisposeAsync();
        await NoThink.DisposeAsync();
        await NoSwitch.DisposeAsync();
        Model.Dispose();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}

public sealed class ThinkingSwitchTests(ThinkingSwitchFixture fx) : IClassFixture<ThinkingSwitchFixture>
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromMinutes(2) };

    /// <summary>POSTs a one-token chat request with <paramref name="extra"/> JSON members; returns status and body.</summary>
    private static async Task<(HttpStatusCode Status, JsonElement Body)> Chat(EdgeLmServer server, string extra = "")
    {
        string json = "{\"model\":\"q3\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":1,\"temperature\":0" +
                      (extra.Length > 0 ? "," + extra : "") + "}";
        using var response = await Http.PostAsync(new Uri(server.BaseAddress, "/v1/chat/completions"),
            new StringContent(json, Encoding.UTF8, "application/json"));
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        return (response.StatusCode, body);
    }

    private static async Task<int> PromptTokens(EdgeLmServer server, string extra = "")
    {
        var (status, body) = await Chat(server, extra);
        Assert.True(status == HttpStatusCode.OK, body.ToString());
        return body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
    }

    /// <summary>Tokens of the prompt the template renders, counted independently of the server.</summary>
    private int Expected(bool thinking)
    {
        string prompt = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n" + (thinking ? "" : "<think>\n\n</think>\n\n");
        return fx.Qwen3Tokenizer.Encode(prompt).Length;
    }

    [Fact]
    public async Task ChatTemplateKwargsSwitchesThinkingPerRequest()
    {
        Assert.True(fx.Thinking.TemplateHasThinkingSwitch);
        Assert.True(Expected(false) > Expected(true));
        Assert.Equal(Expected(true), await PromptTokens(fx.Thinking));
        Assert.Equal(Expected(false), await PromptTokens(fx.Thinking, "\"chat_template_kwargs\":{\"enable_thinking\":false}"));
        Assert.Equal(Expected(true), await PromptTokens(fx.Thinking, "\"chat_template_kwargs\":{\"enable_thinking\":true}"));
        // Other template variables are accepted and ignored; the older top-level field still works.
        Assert.Equal(Expected(true), await PromptTokens(fx.Thinking, "\"chat_template_kwargs\":{\"foo\":[1,2]}"));
        Assert.Equal(Expected(false), await PromptTokens(fx.Thinking, "\"enable_thinking\":false"));
        // chat_template_kwargs wins over the top-level field.
        Assert.Equal(Expected(true), await PromptTokens(fx.Thinking, "\"enable_thinking\":false,\"chat_template_kwargs\":{\"enable_thinking\":true}"));
    }

    [Fact]
    public async Task ServerDefaultNoThinkCanBeOverriddenPerRequest()
    {
        Assert.Equal(Expected(false), await PromptTokens(fx.NoThink));
        Assert.Equal(Expected(false), await PromptTokens(fx.NoThink, "\"chat_template_kwargs\":{\"enable_thinking\":null}"));
        Assert.Equal(Expected(true), await PromptTokens(fx.NoThink, "\"chat_template_kwargs\":{\"enable_thinking\":true}"));
    }

    [Fact]
    public async Task TemplatesWithoutTheSwitchIgnoreIt()
    {
        Assert.False(fx.NoSwitch.TemplateHasThinkingSwitch);
        int plain = await PromptTokens(fx.NoSwitch, "\"chat_template_kwargs\":{\"enable_thinking\":true}");
        Assert.Equal(plain, await PromptTokens(fx.NoSwitch));
        Assert.Equal(plain, await PromptTokens(fx.NoSwitch, "\"chat_template_kwargs\":{\"enable_thinking\":false}"));
        Assert.Equal(plain, await PromptTokens(fx.NoSwitch, "\"enable_thinking\":false"));
    }

    [Theory]
    [InlineData("\"chat_template_kwargs\":5")]
    [InlineData("\"chat_template_kwargs\":{\"enable_thinking\":\"no\"}")]
    public async Task MalformedKwargsAreA400NamingTheField(string extra)
    {
        var (status, body) = await Chat(fx.Thinking, extra);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("chat_template_kwargs", body.GetProperty("error").GetProperty("param").GetString());
    }
}
