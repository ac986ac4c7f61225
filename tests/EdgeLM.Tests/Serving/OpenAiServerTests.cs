#pragma warning disable OPENAI001 // Seed is marked experimental by the OpenAI client
using System.ClientModel;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using EdgeLM.Inference;
using OpenAI;
using OpenAI.Chat;
using TemplateMessage = EdgeLM.Tokenization.ChatMessage;

namespace EdgeLM.Tests.Serving;

/// <summary>The official OpenAI .NET client against edgelm serve: every answer must equal the engine's own Generator.</summary>
public class OpenAiServerTests(ServingFixture fx) : IClassFixture<ServingFixture>
{
    private ChatClient Client() => new("tiny-serve", new ApiKeyCredential("unused"),
        new OpenAIClientOptions { Endpoint = new Uri(fx.Server.BaseAddress, "/v1") });

    private static GenerationOptions Reference(float temperature, float topP, ulong seed, int max, params string[] stops) => new()
    {
        MaxNewTokens = max,
        Sampling = new SamplingOptions { Temperature = temperature, TopP = topP, Seed = seed },
        StopStrings = stops,
    };

    [Fact]
    public async Task ChatCompletionEqualsTheGeneratorWithTheSameSeed()
    {
        var expected = fx.Generate(fx.ChatPrompt(new TemplateMessage("system", "Be brief."), new TemplateMessage("user", "hello there")),
            Reference(1.1f, 0.9f, 42, 24));
        ChatCompletion reply = await Client().CompleteChatAsync(
            [new SystemChatMessage("Be brief."), new UserChatMessage("hello there")],
            new ChatCompletionOptions { Temperature = 1.1f, TopP = 0.9f, Seed = 42, MaxOutputTokenCount = 24 });

        Assert.Equal(expected.Text, reply.Content.Count == 0 ? "" : reply.Content[0].Text);
        Assert.Equal(expected.Result.PromptTokens, reply.Usage.InputTokenCount);
        Assert.Equal(expected.Result.GeneratedTokens, reply.Usage.OutputTokenCount);
        Assert.Equal(expected.Result.PromptTokens + expected.Result.GeneratedTokens, reply.Usage.TotalTokenCount);
        Assert.Equal(expected.Result.Finish == FinishReason.Length ? OpenAI.Chat.ChatFinishReason.Length : OpenAI.Chat.ChatFinishReason.Stop, reply.FinishReason);
        Assert.Equal(ChatMessageRole.Assistant, reply.Role);
    }

    [Fact]
    public async Task StreamedChatEqualsTheGeneratorAndEndsWithUsage()
    {
        var expected = fx.Generate(fx.ChatPrompt(new TemplateMessage("user", "stream me")), Reference(0.9f, 1f, 7, 30));
        var text = new StringBuilder();
        OpenAI.Chat.ChatFinishReason? finish = null;
        ChatTokenUsage? usage = null;
        int updates = 0;
        await foreach (var update in Client().CompleteChatStreamingAsync([new UserChatMessage("stream me")],
                           new ChatCompletionOptions { Temperature = 0.9f, TopP = 1f, Seed = 7, MaxOutputTokenCount = 30 }))
        {
            updates++;
            foreach (var part in update.ContentUpdate) text.Append(part.Text);
            finish ??= update.FinishReason;
            usage ??= update.Usage;
        }
        Assert.Equal(expected.Text, text.ToString());
        Assert.True(updates >= 2, "role chunk and final chunk at least");
        Assert.NotNull(finish);
        Assert.Equal(expected.Result.GeneratedTokens, usage!.OutputTokenCount);
        Assert.Equal(expected.Result.PromptTokens, usage.InputTokenCount);
    }

    [Fact]
    public async Task StopSequencesCutTheAnswerLikeTheGenerator()
    {
        // A stop string taken from the unconstrained answer itself, so it is sure to occur.
        var free = fx.Generate(fx.ChatPrompt(new TemplateMessage("user", "abc")), Reference(1f, 1f, 3, 40));
        Assert.True(free.Text.Length >= 4, "the reference answer is long enough to cut");
        // Its first occurrence must be past the start so the cut is visible; U+FFFD (split UTF-8) repeats too often to use.
        int at = Enumerable.Range(1, free.Text.Length - 2).First(i => free.Text.IndexOf(free.Text.Substring(i, 2), StringComparison.Ordinal) == i
            && !free.Text.Substring(i, 2).Contains('\uFFFD'));
        string stop = free.Text.Substring(at, 2);
        var expected = fx.Generate(fx.ChatPrompt(new TemplateMessage("user", "abc")), Reference(1f, 1f, 3, 40, stop, "never-there"));
        var options = new ChatCompletionOptions { Temperature = 1f, TopP = 1f, Seed = 3, MaxOutputTokenCount = 40 };
        options.StopSequences.Add(stop);
        options.StopSequences.Add("never-there");
        ChatCompletion reply = await Client().CompleteChatAsync([new UserChatMessage("abc")], options);
        Assert.Equal(expected.Text, reply.Content.Count == 0 ? "" : reply.Content[0].Text);
        Assert.DoesNotContain(stop, expected.Text);
        Assert.Equal(OpenAI.Chat.ChatFinishReason.Stop, reply.FinishReason);
    }

    [Fact]
    public async Task CompletionsEndpointStreamedAndNotEqualsTheGenerator()
    {
        // The OpenAI .NET client has no public legacy-completions API, so this endpoint is driven with raw HTTP.
        var expected = fx.Generate("Once upon a time", Reference(0.7f, 0.95f, 99, 16));
        var body = new { model = "tiny-serve", prompt = "Once upon a time", temperature = 0.7, top_p = 0.95, seed = 99, max_tokens = 16, stop = (string?)null };
        using var response = await fx.Http.PostAsJsonAsync("/v1/completions", body);
        Assert.Equal(200, (int)response.StatusCode);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var choice = json.RootElement.GetProperty("choices")[0];
        Assert.Equal(expected.Text, choice.GetProperty("text").GetString());
        Assert.Equal(expected.Result.Finish == FinishReason.Length ? "length" : "stop", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(expected.Result.GeneratedTokens, json.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        using var streamed = await fx.Http.PostAsJsonAsync("/v1/completions", new { model = "tiny-serve", prompt = "Once upon a time", temperature = 0.7, top_p = 0.95, seed = 99, max_tokens = 16, stream = true });
        Assert.Equal("text/event-stream", streamed.Content.Headers.ContentType?.MediaType);
        string sse = await streamed.Content.ReadAsStringAsync();
        var events = sse.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        Assert.Equal("data: [DONE]", events[^1]);
        var text = new StringBuilder();
        foreach (var e in events[..^1])
        {
            using var chunk = JsonDocument.Parse(e["data: ".Length..]);
            text.Append(chunk.RootElement.GetProperty("choices")[0].GetProperty("text").GetString());
        }
        Assert.Equal(expected.Text, text.ToString());
        using var lastChunk = JsonDocument.Parse(events[^2]["data: ".Length..]);
        Assert.Equal(expected.Result.PromptTokens, lastChunk.RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
    }

    [Fact]
    public async Task EightConcurrentClientsEachGetTheirOwnCompleteAnswer()
    {
        const int clients = 8;
        var prompts = Enumerable.Range(0, clients).Select(i => $"question number {i}: {new string((char)('a' + i), i + 1)}").ToArray();
        var client = Client();
        var answers = await Task.WhenAll(prompts.Select(async (p, i) =>
        {
            var options = new ChatCompletionOptions { Temperature = 1f, TopP = 0.95f, Seed = 100 + i, MaxOutputTokenCount = 20 + i };
            if (i % 2 == 0)
            {
                ChatCompletion c = await client.CompleteChatAsync([new UserChatMessage(p)], options);
                return (c.Content.Count == 0 ? "" : c.Content[0].Text, c.Usage.OutputTokenCount);
            }
            var sb = new StringBuilder();
            int tokens = -1;
            await foreach (var u in client.CompleteChatStreamingAsync([new UserChatMessage(p)], options))
            {
                foreach (var part in u.ContentUpdate) sb.Append(part.Text);
                if (u.Usage != null) tokens = u.Usage.OutputTokenCount;
            }
            return (sb.ToString(), tokens);
        }));
        for (int i = 0; i < clients; i++)
        {
            var expected = fx.Generate(fx.ChatPrompt(new TemplateMessage("user", prompts[i])), Reference(1f, 0.95f, (ulong)(100 + i), 20 + i));
            Assert.Equal(expected.Text, answers[i].Item1);
            Assert.Equal(expected.Result.GeneratedTokens, answers[i].Item2);
        }
        Assert.True(fx.Server.Scheduler.SessionCount <= fx.Server.Scheduler.Parallel, "sessions are pooled, not allocated per request");
    }

    [Fact]
    public async Task ModelsHealthAndMetricsDescribeTheServer()
    {
        var models = await fx.Http.GetFromJsonAsync<JsonElement>("/v1/models");
        Assert.Equal("tiny-serve", models.GetProperty("data")[0].GetProperty("id").GetString());
        var health = await fx.Http.GetFromJsonAsync<JsonElement>("/health");
        Assert.Equal("ok", health.GetProperty("status").GetString());

        await fx.Http.PostAsJsonAsync("/v1/completions", new { model = "tiny-serve", prompt = "x", max_tokens = 2, seed = 1 });
        string metrics = await fx.Http.GetStringAsync("/metrics");
        Assert.Contains("edgelm_requests_total{endpoint=\"/v1/completions\",status=\"200\"}", metrics);
        Assert.Contains("edgelm_batching_info{mode=\"batched\"} 1", metrics);
        foreach (var name in new[] { "edgelm_prompt_tokens_total", "edgelm_generated_tokens_total", "edgelm_prefill_tokens_per_second",
                     "edgelm_decode_tokens_per_second", "edgelm_queue_length", "edgelm_active_sequences", "edgelm_batch_steps_total",
                     "edgelm_batch_tokens_total", "edgelm_batch_sequences_total" })
            Assert.Contains($"\n{name} ", metrics);
        var generated = metrics.Split('\n').Single(l => l.StartsWith("edgelm_generated_tokens_total "));
        Assert.True(double.Parse(generated.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture) > 0, generated);
    }
}
