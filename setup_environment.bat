@echo off
rem Set up whisper_lora_env on Windows: the Python packages from requirements.txt and whisper-lora itself.
rem   setup_environment.bat          what the toolkit needs
rem   setup_environment.bat --dev    also the test tools
rem The demo and the speech tests also need espeak-ng (https://github.com/espeak-ng/espeak-ng/releases) on PATH.
setlocal
cd /d "%~dp0"
set EXTRAS=[server]
if "%1"=="--dev" set EXTRAS=[dev]
if not exist whisper_lora_env\Scripts\python.exe (
    python -m venv whisper_lora_env || (echo error: python -m venv failed & exit /b 1)
)
whisper_lora_env\Scripts\python -m pip install -q --upgrade pip || exit /b 1
whisper_lora_env\Scripts\python -m pip install -q -r requirements.txt || exit /b 1
whisper_lora_env\Scripts\python -m pip install -q -e ".%EXTRAS%" || exit /b 1
echo whisper-lora is installed in whisper_lora_env: activate it with whisper_lora_env\Scripts\activate, then run whisper-lora --help
