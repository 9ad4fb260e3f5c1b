// Renders chat requests through llama.cpp's own chat code, as llama-server does for /v1/chat/completions:
// built by test/chat-template-llama-cpp.test.ts against node-llama-cpp's libllama-common.so and the headers
// of the llama.cpp source it ships (node_modules/node-llama-cpp/llama/gitRelease.bundle).
//
// stdin:  {"template": str, "bos_token": str, "eos_token": str,
//          "requests": [{"body": {"messages", "add_generation_prompt"?, "chat_template_kwargs"?}, "output"?: str}]}
// stdout: {"caps": {name: bool}, "results": [{"prompt", "generation_prompt", "content"?} or {"error"}]}
// "content" is what the server's parser makes of a model that generated `output`.
#include "chat.h"

#include <iostream>
#include <iterator>
#include <string>

// The request fields llama-server's oaicompat_chat_params_parse (tools/server/server-common.cpp) reads for a
// plain chat: messages, add_generation_prompt (default true), a trailing assistant message prefilled (the
// server's default, --prefill-assistant), and chat_template_kwargs passed on as JSON texts; the server's
// default reasoning format.
static common_chat_templates_inputs request_inputs(const common_json & body) {
    common_chat_templates_inputs inputs;
    inputs.use_jinja             = true;
    inputs.reasoning_format      = COMMON_REASONING_FORMAT_DEEPSEEK;
    inputs.messages              = common_chat_msgs_parse_oaicompat(body.at("messages"));
    inputs.add_generation_prompt = body.contains("add_generation_prompt") ? body.at("add_generation_prompt").get<bool>() : true;
    if (!inputs.messages.empty() && inputs.messages.back().role == "assistant") {
        inputs.continue_final_message = COMMON_CHAT_CONTINUATION_AUTO;
        inputs.add_generation_prompt  = false;
    }
    if (body.contains("chat_template_kwargs")) {
        for (const auto & [key, value] : body.at("chat_template_kwargs").items()) {
            inputs.chat_template_kwargs[key] = value.dump();
        }
    }
    return inputs;
}

int main() {
    const std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    const common_json request = common_json::parse(text);
    auto templates = common_chat_templates_init(nullptr, request.at("template").get<std::string>(),
                                                request.at("bos_token").get<std::string>(),
                                                request.at("eos_token").get<std::string>());
    common_json out = common_json::object();
    common_json caps = common_json::object();
    for (const auto & [name, value] : common_chat_templates_get_caps(templates.get())) {
        caps[name] = value;
    }
    out["caps"] = caps;
    common_json results = common_json::array();
    const common_json & requests = request.at("requests");
    for (size_t i = 0; i < requests.size(); i++) {
        const common_json & r = requests.at(i);
        common_json result = common_json::object();
        try {
            const common_chat_params params = common_chat_templates_apply(templates.get(), request_inputs(r.at("body")));
            result["prompt"] = params.prompt;
            result["generation_prompt"] = params.generation_prompt;
            if (r.contains("output")) {
                common_chat_parser_params parser_params(params);
                parser_params.reasoning_format = COMMON_REASONING_FORMAT_DEEPSEEK;
                if (!params.parser.empty()) {
                    parser_params.parser.load(params.parser);
                }
                result["content"] = common_chat_parse(r.at("output").get<std::string>(), false, parser_params).content;
            }
        } catch (const std::exception & e) {
            result["error"] = std::string(e.what());
        }
        results.push_back(result);
    }
    out["results"] = results;
    std::cout << out.dump() << std::endl;
    return 0;
}
