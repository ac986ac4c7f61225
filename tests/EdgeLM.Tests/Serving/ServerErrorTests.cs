using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using EdgeLM.Serving;

namespace EdgeLM.Tests.Serving;

/// <summary>Every refusal is OpenAI's error JSON with the right status, and the server answers normally right after.</summary>
public class ServerErrorTests(ServingFixture fx) : IClassFixture<ServingFixture>
{
    private static async Task AssertError(HttpResponseMessage response, HttpStatusCode status, string? code = null, string? param = null)
    {
        string body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"{(int)response.StatusCode}: {body}");
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        using var json = JsonDocument.Parse(body);
        var error = json.RootElement.GetProperty("error");
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("type").GetString()));
        Assert.True(error.TryGetProperty("param", out var p), "param is always present");
        Assert.True(error.TryGetProperty("code", out var c), "code is always present");
        if (code != null) Assert.Equal(code, c.GetString());
        if (param != null) Assert.Equal(param, p.GetString());
    }

    private static async Task AssertStillServing(HttpClient http, string? apiKey = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = JsonContent.Create(new { model = "tiny-serve", prompt = "still there?", max_tokens = 3, seed = 5 }),
        };
        if (apiKey != null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    private static StringContent Raw(string json) => new(json, Encoding.UTF8, "application/json");

    [Fact]
    public async Task MalformedJsonIs400()
    {
        using var r = await fx.Http.PostAsync("/v1/chat/completions", Raw("{\"model\": \"tiny-serve\", \"messages\": [")); 
        await AssertError(r, HttpStatusCode.BadRequest);
        using var wrongType = await fx.Http.PostAsync("/v1/chat/completions", Raw("{\"model\":\"tiny-serve\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":\"hot\"}"));
        await AssertError(wrongType, HttpStatusCode.BadRequest);
        using var badStop = await fx.Http.PostAsync("/v1/completions", Raw("{\"model\":\"tiny-serve\",\"prompt\":\"hi\",\"stop\":[1,2]}"));
        await AssertError(badStop, HttpStatusCode.BadRequest, param: "stop");
        using var noMessages = await fx.Http.PostAsync("/v1/chat/completions", Raw("{\"model\":\"tiny-serve\",\"messages\":[]}"));
        await AssertError(noMessages, HttpStatusCode.BadRequest, param: "messages");
        using var badTemperature = await fx.Http.PostAsync("/v1/completions", Raw("{\"model\":\"tiny-serve\",\"prompt\":\"hi\",\"temperature\":-1}"));
        await AssertError(badTemperature, HttpStatusCode.BadRequest);
        await AssertStillServing(fx.Http);
    }

    [Fact]
    public async Task UnknownModelIs404()
    {
        using var r = await fx.Http.PostAsJsonAsync("/v1/chat/completions", new { model = "gpt-9", messages = new[] { new { role = "user", content = "hi" } } });
        await AssertError(r, HttpStatusCode.NotFound, "model_not_found", "model");
        await AssertStillServing(fx.Http);
    }

    [Fact]
    public async Task PromptLongerThanTheContextIs400()
    {
        string prompt = new('x', ServingFixture.Context * 2); // byte-level: one token per character at least
        using var r = await fx.Http.PostAsJsonAsync("/v1/completions", new { model = "tiny-serve", prompt });
        await AssertError(r, HttpStatusCode.BadRequest, "context_length_exceeded");
        using var chat = await fx.Http.PostAsJsonAsync("/v1/chat/completions", new { model = "tiny-serve", messages = new[] { new { role = "user", content = prompt } }, stream = true });
        await AssertError(chat, HttpStatusCode.BadRequest, "context_length_exceeded");
        await AssertStillServing(fx.Http);
    }

    [Fact]
    public async Task MaxTokensBeyondTheContextIs400()
    {
        using var r = await fx.Http.PostAsJsonAsync("/v1/completions", new { model = "tiny-serve", prompt = "hello", max_tokens = ServingFixture.Context });
        await AssertError(r, HttpStatusCode.BadRequest, "context_length_exceeded", "max_tokens");
        using var zero = await fx.Http.PostAsJsonAsync("/v1/completions", new { model = "tiny-serve", prompt = "hello", max_tokens = 0 });
        await AssertError(zero, HttpStatusCode.BadRequest, param: "max_tokens");
        await AssertStillServing(fx.Http);
    }

    [Fact]
    public async Task ApiKeyIsRequiredWhenSet()
    {
        await using var server = await fx.StartAsync(new ServerOptions { Port = 0, Parallel = 1, ContextLength = 64, Threads = 1, ApiKey = "sekrit", ModelId = "tiny-serve" });
        using var http = new HttpClient { BaseAddress = server.BaseAddress };
        using var missing = await http.GetAsync("/v1/models");
        await AssertError(missing, HttpStatusCode.Unauthorized, "invalid_api_key");
        using var wrong = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        wrong.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "sekrit2");
        await AssertError(await http.SendAsync(wrong), HttpStatusCode.Unauthorized, "invalid_api_key");
        using var health = await http.GetAsync("/health"); // probes need no key
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        await AssertStillServing(http, "sekrit");
    }

    [Fact]
    public async Task TooManyQueuedIs429()
    {
        var gate = new GatedStepper();
        await using var server = await fx.StartAsync(new ServerOptions { Port = 0, Parallel = 1, MaxQueue = 1, ContextLength = 64, Threads = 1, Stepper = gate, ModelId = "tiny-serve" });
        using var http = new HttpClient { BaseAddress = server.BaseAddress };
        object Body(int seed) => new { model = "tiny-serve", prompt = "hi", max_tokens = 5, seed };
        var running = http.PostAsJsonAsync("/v1/completions", Body(1));
        await Poll.UntilAsync(() => server.Scheduler.ActiveCount == 1, "the first request runs");
        var queued = http.PostAsJsonAsync("/v1/completions", Body(2));
        await Poll.UntilAsync(() => server.Scheduler.QueueLength == 1, "the second request waits");
        using (var refused = await http.PostAsJsonAsync("/v1/completions", Body(3)))
            await AssertError(refused, HttpStatusCode.TooManyRequests, "queue_full");
        gate.Open();
        using (var a = await running) Assert.Equal(HttpStatusCode.OK, a.StatusCode);
        using (var b = await queued) Assert.Equal(HttpStatusCode.OK, b.StatusCode);
        await AssertStillServing(http);
        Assert.Equal(1, server.Metrics.RequestCount("/v1/completions", 429));
    }
}
