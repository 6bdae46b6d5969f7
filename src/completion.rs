//! `completions SHELL`: clap_complete's script for our own words, and for bash and zsh a
//! front function that completes the rest as cargo would: at the command word, cargo's commands
//! too (`cargo --list`, asked at Tab time, never at start-up); after a wrapped cargo command,
//! cargo's own completion (rustup's `_cargo`, or the `cargo-<cmd>`'s own as cargo hands it
//! over); after `exec --`, the program's completion.

use clap::CommandFactory;

use crate::cli::Cli;

/// The script for `shell`.
pub(crate) fn script(shell: clap_complete::Shell) -> String {
    let mut cmd = visible(&Cli::command());
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut cmd, "cargo-guarded", &mut text);
    let text = String::from_utf8_lossy(&text).into_owned();
    match shell {
        clap_complete::Shell::Bash => bash(text),
        clap_complete::Shell::Zsh => zsh(text),
        _ => text,
    }
}

/// The command as completion sees it: hidden commands and options left out (clap_complete
/// offers them otherwise), so `__split-words` and `--seed-incremental` are never proposed.
fn visible(cmd: &clap::Command) -> clap::Command {
    let mut out = clap::Command::new(cmd.get_name().to_owned());
    if let Some(bin) = cmd.get_bin_name() {
        out = out.bin_name(bin.to_owned());
    }
    if let Some(version) = cmd.get_version() {
        out = out.version(version.to_owned());
    }
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        out = out.arg(arg.clone());
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        out = out.subcommand(visible(sub));
    }
    out
}

/// The words the front function must know: our options that take their value as the next
/// word (`--root DIR`), to find the command word after them, and our own commands.
fn words() -> (String, String) {
    let cmd = Cli::command();
    let mut valued: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.get_action().takes_values() && !a.is_require_equals_set())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    valued.sort();
    valued.dedup();
    let ours: Vec<&str> = cmd
        .get_subcommands()
        .map(clap::Command::get_name)
        .chain(["help"])
        .collect();
    (valued.join("|"), ours.join("|"))
}

/// clap's bash script with the hyphen fix, then the front function, registered for both
/// `cargo-guarded` and (through a hook on `cargo`) `cargo guarded`.
fn bash(text: String) -> String {
    // clap-rs/clap#6421: with a hyphen in the bin name, the bash script's dispatch reaches
    // `cargo__guarded__subcmd__gc` while its case arms are spelled
    // `cargo__subcmd__guarded__subcmd__gc`, so no subcommand's options complete.
    let mut text = text.replace(
        "cargo__subcmd__guarded__subcmd__",
        "cargo__guarded__subcmd__",
    );
    let (valued, ours) = words();
    text.push_str(
        &BASH_FRONT
            .replace("@VALUED@", &valued)
            .replace("@OURS@", &ours),
    );
    text
}

/// clap's zsh script with its function renamed `_cargo-guarded_clap`, then the front function
/// `_cargo-guarded` (the name rustup's `_cargo` calls for `cargo guarded …`).
fn zsh(text: String) -> String {
    let text = text.replacen("\n_cargo-guarded() {\n", "\n_cargo-guarded_clap() {\n", 1);
    // The dispatch at the end runs the front function, defined before it.
    let dispatch = text.rfind("\nif [ \"$funcstack[1]\"").unwrap_or(text.len());
    let (valued, ours) = words();
    let front = ZSH_FRONT
        .replace("@VALUED@", &valued)
        .replace("@OURS@", &ours);
    format!("{}\n{front}{}", &text[..dispatch], &text[dispatch..])
}

/// Appended to `completions bash`. `cargo guarded <Tab>` goes through cargo's completion, which
/// hands `cargo <cmd>` over to `cargo-<cmd>`'s only with bash-completion >= 2.12 (rustup's
/// `cargo.bashcomp.sh`); Debian 12 and Ubuntu 24.04 ship 2.11, where it completes file names.
/// So this hooks `cargo` itself: `guarded …` is completed here, anything else by cargo's own
/// completion, loaded the way bash-completion loads it.
const BASH_FRONT: &str = r#"
# Whether $1 has a completion (cargo's: its `_cargo`, since `cargo` is registered to ours).
_cargo_guarded_has() {
    if [[ $1 == cargo ]]; then
        declare -F _cargo >/dev/null
    else
        complete -p "$1" >/dev/null 2>&1
    fi
}

# Load the completion of $1 as bash-completion would; whether there is one now.
_cargo_guarded_load() {
    _cargo_guarded_has "$1" && return 0
    if declare -F _comp_load >/dev/null; then
        _comp_load "$1"
    elif declare -F __load_completion >/dev/null; then
        __load_completion "$1"
    fi
    # Loading cargo's completion registers its own function for `cargo`: put ours back.
    complete -F _cargo_guarded_via_cargo -o bashdefault -o default cargo
    _cargo_guarded_has "$1"
}

# Our own words: clap's function, on the words from $1 on as `cargo-guarded ARGS...`.
_cargo_guarded_clap() {
    local COMP_WORDS=(cargo-guarded "${COMP_WORDS[@]:$1}")
    local COMP_CWORD=$((COMP_CWORD - $1 + 1))
    _cargo__guarded cargo-guarded "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
}

# A wrapped cargo command at $1: its words as `cargo CMD ARGS...` (line and cursor to match),
# completed by `cargo-CMD`'s own completion if it has one (as cargo's hands it over from
# bash-completion 2.12 on), else by cargo's.
_cargo_guarded_cargo() {
    local IFS=$' \t\n' cmd=${COMP_WORDS[$1]} func
    local COMP_WORDS=(cargo "${COMP_WORDS[@]:$1}")
    local COMP_CWORD=$((COMP_CWORD - $1 + 1))
    if _cargo_guarded_load "cargo-$cmd"; then
        func=$(complete -p "cargo-$cmd" 2>/dev/null)
        func=${func#* -F }
        func=${func%% *}
        COMP_WORDS[1]=cargo-$cmd
        COMP_WORDS=("${COMP_WORDS[@]:1}")
        ((COMP_CWORD--))
    else
        _cargo_guarded_load cargo
        func=_cargo
    fi
    local COMP_LINE="${COMP_WORDS[*]:0:COMP_CWORD + 1}"
    local COMP_POINT=${#COMP_LINE}
    if declare -F "$func" >/dev/null; then
        "$func" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
    fi
}

# The words after `cargo-guarded` ($1 = 1) or `cargo guarded` ($1 = 2).
_cargo_guarded_args() {
    local first=$1 i cmd_i=0 cur=${COMP_WORDS[COMP_CWORD]}
    for ((i = first; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            @VALUED@) ((i++)) ;;
            -*) ;;
            *) cmd_i=$i; break ;;
        esac
    done
    if ((cmd_i == 0)); then
        # The command word: ours, and cargo's commands (what `cargo <Tab>` offers).
        _cargo_guarded_clap "$first"
        if [[ $cur != -* ]]; then
            local IFS=$'\n'
            COMPREPLY+=($(compgen -W "$(cargo --list 2>/dev/null | awk 'NR > 1 {print $1}')" -- "$cur"))
        fi
        return
    fi
    case ${COMP_WORDS[cmd_i]} in
        exec)
            for ((i = cmd_i + 1; i < COMP_CWORD; i++)); do
                [[ ${COMP_WORDS[i]} == -- ]] || continue
                # `exec -- PROGRAM ARGS`: a command line of its own.
                if declare -F _comp_command_offset >/dev/null; then
                    _comp_command_offset $((i + 1))
                elif declare -F _command_offset >/dev/null; then
                    _command_offset $((i + 1))
                elif ((COMP_CWORD == i + 1)); then
                    COMPREPLY=($(compgen -c -- "$cur"))
                fi
                return
            done
            _cargo_guarded_clap "$first"
            ;;
        @OURS@) _cargo_guarded_clap "$first" ;;
        *) _cargo_guarded_cargo "$cmd_i" ;;
    esac
}

_cargo_guarded() {
    _cargo_guarded_args 1
}
complete -F _cargo_guarded -o bashdefault -o default cargo-guarded

# `cargo guarded ...` on any bash-completion: completed here; every other `cargo ...` by cargo's
# own completion.
_cargo_guarded_via_cargo() {
    if [[ ${COMP_CWORD} -ge 2 && ${COMP_WORDS[1]} == guarded ]]; then
        _cargo_guarded_args 2
        return
    fi
    if _cargo_guarded_load cargo && declare -F _cargo >/dev/null; then
        _cargo "$@"
    fi
}
complete -F _cargo_guarded_via_cargo -o bashdefault -o default cargo
"#;

/// Inserted in `completions zsh` before its dispatch: the front function rustup's `_cargo`
/// calls for `cargo guarded …` (`words[1]` is then `guarded`) and compinit for `cargo-guarded`.
const ZSH_FRONT: &str = r#"
_cargo-guarded() {
    local i=2 cmd_i=0 dd
    while (( i < CURRENT )); do
        case ${words[i]} in
            (@VALUED@) (( i += 2 )); continue ;;
            (-*) ;;
            (*) cmd_i=$i; break ;;
        esac
        (( i++ ))
    done
    if (( cmd_i == 0 )); then
        # The command word: ours, and cargo's commands (what `cargo <Tab>` offers).
        _cargo-guarded_clap "$@"
        if [[ ${words[CURRENT]} != -* ]]; then
            local -a commands
            commands=( ${${${(M)"${(f)$(_call_program commands cargo --list)}":#    *}/ ##/}/ ##/:} )
            _describe -t cargo-commands 'cargo command' commands
        fi
        return 0
    fi
    case ${words[cmd_i]} in
        (exec)
            dd=${words[(ib:cmd_i:)--]}
            if (( dd < CURRENT )); then
                # `exec -- PROGRAM ARGS`: a command line of its own.
                shift $dd words
                (( CURRENT -= dd ))
                _normal
            else
                _cargo-guarded_clap "$@"
            fi
            ;;
        (@OURS@) _cargo-guarded_clap "$@" ;;
        (*)
            # A wrapped cargo command: cargo's own completion, on `cargo CMD ARGS`.
            words=(cargo "${(@)words[cmd_i,-1]}")
            (( CURRENT -= cmd_i - 2 ))
            (( $+functions[_cargo] )) || autoload -Uz _cargo
            _cargo
            ;;
    esac
}
"#;
