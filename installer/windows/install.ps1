<#
.SYNOPSIS
    Instala, repara, atualiza ou remove o agente transmissor no Windows.
    (Installs, repairs, upgrades or removes the transmissor agent on Windows.)

.DESCRIPTION
    Executar como Administrador, na pasta onde o zip foi extraído
    (transmissor-agent.exe ao lado deste script):

      1. copia transmissor-agent.exe para -InstallDir;
      2. registra o serviço "transmissor-agent" (conta virtual
         NT SERVICE\transmissor-agent, início automático atrasado,
         reinício automático em caso de falha);
      3. cria C:\ProgramData\transmissor\{config,state,spool,logs} com
         permissões restritas (só SYSTEM, Administradores e o serviço; a
         senha e a chave privada só para SYSTEM e o serviço); uma pasta
         que já existia perde o dono e as permissões que tinha (dono:
         Administradores; só as entradas acima), e um link no lugar dela
         é recusado;
      4. escreve config\agent.toml e config\source.password;
      5. inscreve o agente no coletor com o token de uso único (pulado se a
         identidade já existe);
      6. inicia o serviço e executa o diagnóstico (doctor).

    Reexecutar repara a instalação; valores não informados são lidos do
    agent.toml existente. Com um zip novo, atualiza o executável e mantém
    identidade, estado dos planos e spool. -Uninstall remove tudo (com
    -KeepSpool, mantém a pasta spool).

.EXAMPLE
    .\install.ps1 -Collector https://coletor.exemplo.gov.br:7443 -DbUser transmissor_leitura -PlanKey ed25519:AAAA...=
    (o token e a senha são pedidos sem eco / token and password are prompted without echo)

.EXAMPLE
    .\install.ps1 -Uninstall -KeepSpool
#>
#Requires -Version 5.1
#Requires -RunAsAdministrator
[CmdletBinding()]
param(
    # Endereço do coletor, https://HOST:PORTA.
    [string]$Collector,
    # Token de inscrição de uso único (ou a variável TRANSMISSOR_ENROLL_TOKEN; sem ambos, é pedido).
    [string]$Token,
    # PostgreSQL do PEC (o PostgreSQL que acompanha o e-SUS APS PEC escuta em localhost:5433).
    [string]$DbHost = 'localhost',
    [int]$DbPort = 5433,
    [string]$DbName = 'esus',
    # Usuário somente-leitura do banco (ver LEIA-ME.md).
    [string]$DbUser,
    # Arquivo com a senha desse usuário; sem ele, a senha é pedida (sem eco).
    [string]$DbPasswordFile,
    # Chave(s) pública(s) dos planos, ed25519:<base64>, fornecida(s) pela equipe central.
    [string[]]$PlanKey,
    [string]$InstallDir = (Join-Path $env:ProgramFiles 'transmissor'),
    [string]$DataDir = (Join-Path $env:ProgramData 'transmissor'),
    # Remove o serviço, o programa e os dados.
    [switch]$Uninstall,
    # Com -Uninstall: mantém a pasta spool (dados extraídos ainda não enviados).
    [switch]$KeepSpool,
    # Não executa o diagnóstico ao final.
    [switch]$SkipDoctor
)

Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'
# The parameters given on the command line (the others fall back on the
# existing agent.toml).
$Given = $PSBoundParameters
# The agent writes UTF-8 (accents in the doctor's report).
try { [Console]::OutputEncoding = New-Object Text.UTF8Encoding($false) } catch { }

$ServiceName = 'transmissor-agent'
$ExeName = 'transmissor-agent.exe'
$ExePath = Join-Path $InstallDir $ExeName
$ConfigDir = Join-Path $DataDir 'config'
$StateDir = Join-Path $DataDir 'state'
$SpoolDir = Join-Path $DataDir 'spool'
$LogDir = Join-Path $DataDir 'logs'
$IdentityDir = Join-Path $StateDir 'identity'
$ConfigFile = Join-Path $ConfigDir 'agent.toml'
$PasswordFile = Join-Path $ConfigDir 'source.password'

# Well-known SIDs, not names: the names are translated on a Portuguese
# Windows ("Administradores", "AUTORIDADE NT\SISTEMA").
$SidSystem = 'S-1-5-18'
$SidAdministrators = 'S-1-5-32-544'

# The agent.toml written by this script. agent/src/service.rs's tests fill
# this template and parse it with the agent's own (strict) parser.
$AgentTomlTemplate = @'
# Escrito por install.ps1 (transmissor). Para mudar estes valores, execute
# o instalador de novo com os parâmetros novos; edições à mão são salvas em
# agent.toml.bak na próxima execução.
version = 1

[agent]
state_dir = '@@STATE_DIR@@'

[source]
host = '@@DB_HOST@@'
port = @@DB_PORT@@
dbname = '@@DB_NAME@@'
user = '@@DB_USER@@'
password_file = '@@PASSWORD_FILE@@'

[collector]
endpoint = '@@COLLECTOR@@'

[spool]
dir = '@@SPOOL_DIR@@'

[plan]
keys = [@@PLAN_KEYS@@]
'@

function Say([string]$Pt, [string]$En) {
    Write-Host "==> $Pt"
    if ($En) { Write-Host "    ($En)" -ForegroundColor DarkGray }
}

function Warn([string]$Pt, [string]$En) {
    Write-Warning "$Pt ($En)"
}

function Fail([string]$Pt, [string]$En) {
    throw "$Pt ($En)"
}

# Runs a native command: its exit code and its output, stderr included.
# (Windows PowerShell 5.1 turns a native stderr line into a terminating
# error under 'Stop'; the agent logs to stderr.)
function Invoke-Captured([scriptblock]$Command) {
    $ErrorActionPreference = 'Continue'
    $out = & $Command 2>&1 | ForEach-Object { "$_" } | Out-String
    @{ Code = $LASTEXITCODE; Output = $out }
}

# Runs a native command; throws with its output when it fails.
function Invoke-Native([string]$What, [scriptblock]$Command) {
    $r = Invoke-Captured $Command
    if ($r.Code -ne 0) {
        Fail "falhou: $What (código $($r.Code))`n$($r.Output)" "failed: $What"
    }
    $r.Output
}

# The virtual account's SID: S-1-5-80- followed by the SHA-1 of the service
# name in upper case (UTF-16LE) as five little-endian integers; the same on
# every Windows, whatever its language.
function Get-ServiceSid([string]$Name) {
    $bytes = [Text.Encoding]::Unicode.GetBytes($Name.ToUpperInvariant())
    $sha1 = [Security.Cryptography.SHA1]::Create()
    try { $hash = $sha1.ComputeHash($bytes) } finally { $sha1.Dispose() }
    $parts = foreach ($i in 0..4) { [BitConverter]::ToUInt32($hash, $i * 4) }
    'S-1-5-80-' + ($parts -join '-')
}

function Invoke-Icacls([string]$Path, [string[]]$Arguments, [string]$What) {
    $icaclsArgs = @($Path) + $Arguments + @('/Q')
    Invoke-Native "icacls $What" { icacls.exe @icaclsArgs } | Out-Null
}

# Text without a byte-order mark (the agent reads UTF-8).
function Write-Utf8([string]$Path, [string]$Text) {
    [IO.File]::WriteAllText($Path, $Text, (New-Object Text.UTF8Encoding($false)))
}

function ConvertFrom-Secure([Security.SecureString]$Secure) {
    $bstr = [Runtime.InteropServices.Marshal]::SecureStringToBSTR($Secure)
    try { [Runtime.InteropServices.Marshal]::PtrToStringBSTR($bstr) }
    finally { [Runtime.InteropServices.Marshal]::ZeroFreeBSTR($bstr) }
}

function Get-Service-OrNull {
    Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
}

function Stop-Agent {
    $svc = Get-Service-OrNull
    if ($svc -and $svc.Status -ne 'Stopped') {
        Say 'parando o serviço (o lote em andamento termina antes)' 'stopping the service (the current batch ends first)'
        Stop-Service -Name $ServiceName -Force
        $svc.WaitForStatus('Stopped', [TimeSpan]::FromMinutes(2))
    }
}

# Values of an agent.toml this script wrote (for a re-run without them).
function Read-ExistingConfig {
    $found = @{}
    if (-not (Test-Path -LiteralPath $ConfigFile)) { return $found }
    $text = [IO.File]::ReadAllText($ConfigFile)
    $section = ''
    foreach ($line in ($text -split "`r?`n")) {
        if ($line -match '^\s*\[([a-z_]+)\]\s*$') { $section = $Matches[1]; continue }
        if ($line -match "^\s*([a-z_]+)\s*=\s*'([^']*)'\s*$") {
            $found["$section.$($Matches[1])"] = $Matches[2]
        } elseif ($line -match '^\s*([a-z_]+)\s*=\s*"([^"]*)"\s*$') {
            $found["$section.$($Matches[1])"] = $Matches[2]
        } elseif ($line -match '^\s*port\s*=\s*(\d+)\s*$') {
            $found["$section.port"] = $Matches[1]
        }
    }
    $keys = [regex]::Matches($text, 'ed25519:[A-Za-z0-9+/]{43}=') | ForEach-Object { $_.Value }
    if ($keys) { $found['plan.keys'] = @($keys | Select-Object -Unique) }
    $found
}

# Removes a file or folder tree without ever entering a link: Windows
# PowerShell 5.1's `Remove-Item -Recurse` enters junctions and deletes what
# they point to, and the service account may make junctions in the folders
# it writes. A junction or symbolic link is removed as a link (its own
# entry: RemoveDirectory on a junction leaves the target alone); folders
# are emptied depth first.
function Remove-Tree([string]$Path) {
    $item = Get-Item -LiteralPath $Path -Force -ErrorAction SilentlyContinue
    if (-not $item) { return }
    if ($item.PSIsContainer -and -not ($item.Attributes -band [IO.FileAttributes]::ReparsePoint)) {
        foreach ($child in Get-ChildItem -LiteralPath $item.FullName -Force) {
            Remove-Tree $child.FullName
        }
        [IO.Directory]::Delete($item.FullName, $false)
    } elseif ($item.PSIsContainer) {
        [IO.Directory]::Delete($item.FullName, $false)
    } else {
        Remove-Item -LiteralPath $item.FullName -Force
    }
}

function Uninstall-Agent {
    Say "removendo o agente transmissor" 'removing the transmissor agent'
    Stop-Agent
    if (Get-Service-OrNull) {
        Invoke-Native 'sc.exe delete' { sc.exe delete $ServiceName } | Out-Null
        Say 'serviço removido' 'service removed'
    }
    if (Test-Path -LiteralPath $InstallDir) {
        Remove-Item -LiteralPath $InstallDir -Recurse -Force
        Say "removido $InstallDir" "removed $InstallDir"
    }
    if (Test-Path -LiteralPath $DataDir) {
        foreach ($item in Get-ChildItem -LiteralPath $DataDir -Force) {
            if ($KeepSpool -and $item.FullName -eq $SpoolDir) { continue }
            Remove-Tree $item.FullName
        }
        if ($KeepSpool -and (Test-Path -LiteralPath $SpoolDir)) {
            Say "spool mantido em $SpoolDir (o resto de $DataDir foi removido)" "spool kept in $SpoolDir"
        } else {
            Remove-Tree $DataDir
            Say "removido $DataDir" "removed $DataDir"
        }
    }
    Say 'desinstalação concluída' 'uninstalled'
}

# The service runs `service --config ... --log-dir ...` as its virtual account.
function Register-Agent {
    $binPath = "`"$ExePath`" service --config `"$ConfigFile`" --log-dir `"$LogDir`""
    $svc = Get-Service-OrNull
    if (-not $svc) {
        Say "registrando o serviço $ServiceName" "registering the service $ServiceName"
        New-Service -Name $ServiceName -BinaryPathName $binPath `
            -DisplayName 'Transmissor - agente municipal' `
            -Description 'Envia os dados do e-SUS APS PEC ao coletor central (transmissor).' `
            -StartupType Automatic | Out-Null
    } else {
        Say "atualizando o serviço $ServiceName" "updating the service $ServiceName"
        # Windows PowerShell 5.1's Set-Service cannot change the command
        # line, and sc.exe's quoting of one is fragile: the registry is exact.
        Set-ItemProperty -LiteralPath "HKLM:\SYSTEM\CurrentControlSet\Services\$ServiceName" `
            -Name ImagePath -Value $binPath
    }
    # Virtual account, delayed automatic start (after the PEC's PostgreSQL).
    Invoke-Native 'sc.exe config' { sc.exe config $ServiceName obj= "NT SERVICE\$ServiceName" start= delayed-auto } | Out-Null
    Invoke-Native 'sc.exe sidtype' { sc.exe sidtype $ServiceName unrestricted } | Out-Null
    # Restart after 10 s, 1 min, then every 5 min; the count resets after a
    # day. failureflag 1: also when it stops with an error code (the agent's
    # service-specific codes, LEIA-ME.md), not only when the process dies.
    Invoke-Native 'sc.exe failure' { sc.exe failure $ServiceName reset= 86400 actions= restart/10000/restart/60000/restart/300000 } | Out-Null
    Invoke-Native 'sc.exe failureflag' { sc.exe failureflag $ServiceName 1 } | Out-Null
}

# A junction or symbolic link where the installer expects a folder: an
# earlier user (ProgramData is writable by Users) could point the data
# folder, or one inside it, anywhere; the installer would then set owners
# and permissions there. Refused.
function Assert-NotReparsePoint([string]$Path) {
    $item = Get-Item -LiteralPath $Path -Force -ErrorAction SilentlyContinue
    if ($item -and ($item.Attributes -band [IO.FileAttributes]::ReparsePoint)) {
        Fail "$Path é um link (junction/symlink), não uma pasta: remova-o e execute de novo" "$Path is a link, not a folder: remove it and run again"
    }
}

# The data folder's own security, set whole in one write: owner
# Administrators, inheritance from ProgramData cut, and exactly these
# entries (SYSTEM and Administrators full control, the service reads). A
# folder that existed before (made by any user: ProgramData lets Users
# create folders) keeps neither its owner, who could rewrite the ACL at
# will, nor any entry it had.
function Set-DataDirRootAcl([string]$ServiceSid) {
    $acl = New-Object Security.AccessControl.DirectorySecurity
    $acl.SetOwner((New-Object Security.Principal.SecurityIdentifier($SidAdministrators)))
    $acl.SetAccessRuleProtection($true, $false)
    $inherit = [Security.AccessControl.InheritanceFlags]'ContainerInherit, ObjectInherit'
    $none = [Security.AccessControl.PropagationFlags]::None
    foreach ($entry in @(
            @($SidSystem, [Security.AccessControl.FileSystemRights]::FullControl),
            @($SidAdministrators, [Security.AccessControl.FileSystemRights]::FullControl),
            @($ServiceSid, [Security.AccessControl.FileSystemRights]::ReadAndExecute))) {
        $sid = New-Object Security.Principal.SecurityIdentifier($entry[0])
        $rule = New-Object Security.AccessControl.FileSystemAccessRule($sid, $entry[1], $inherit, $none, 'Allow')
        $acl.AddAccessRule($rule)
    }
    Set-Acl -LiteralPath $DataDir -AclObject $acl
}

function Set-DataDirAcls([string]$ServiceSid) {
    Say "criando $DataDir com permissões restritas" "creating $DataDir with restricted permissions"
    Assert-NotReparsePoint $DataDir
    New-Item -ItemType Directory -Force -Path $DataDir | Out-Null
    # Owner and entries of the folder itself first (nobody else may then
    # change what is inside), then of everything already in it: owner
    # Administrators (/L: a link itself, never its target), and only what
    # it inherits (/reset drops every explicit entry; the identity folder
    # and the password file get their own below, as on every run).
    # A folder someone else made (and owns) is taken first (icacls uses
    # the administrators' take-ownership right; /L: the folder itself).
    Invoke-Icacls $DataDir @('/setowner', "*${SidAdministrators}", '/L') 'setowner'
    Set-DataDirRootAcl $ServiceSid
    if (Get-ChildItem -LiteralPath $DataDir -Force) {
        Invoke-Icacls (Join-Path $DataDir '*') @('/setowner', "*${SidAdministrators}", '/T', '/L') 'setowner'
        Invoke-Icacls (Join-Path $DataDir '*') @('/reset', '/T', '/L') 'reset'
    }
    foreach ($dir in @($ConfigDir, $StateDir, $SpoolDir, $LogDir, $IdentityDir)) {
        Assert-NotReparsePoint $dir
    }
    foreach ($dir in @($ConfigDir, $StateDir, $SpoolDir, $LogDir)) {
        New-Item -ItemType Directory -Force -Path $dir | Out-Null
    }
    # The service writes its state, spool and logs (config: read only).
    foreach ($dir in @($StateDir, $SpoolDir, $LogDir)) {
        Invoke-Icacls $dir @('/grant:r', "*${ServiceSid}:(OI)(CI)M") $dir
    }
}

# The identity (private key): SYSTEM and the service only. Administrators
# may list the folder and delete from it (repair, uninstall), not read it.
# Files the agent writes there later (renewal) inherit this. -Reset: the
# files enroll has just written (owned by Administrators) lose the entries
# they inherited from state\; on a repair the files the service wrote are
# its own and already inherit from the folder.
function Set-IdentityAcl([string]$ServiceSid, [switch]$Reset) {
    $r = Invoke-Captured { icacls.exe $IdentityDir /inheritance:r /grant:r "*${SidSystem}:(OI)(CI)F" "*${ServiceSid}:(OI)(CI)M" "*${SidAdministrators}:(RD,RA,REA,RC,X,S,DC)" /Q }
    if ($r.Code -ne 0) {
        Warn "permissões de $IdentityDir não aplicadas: $($r.Output.Trim())" "identity folder permissions not applied"
    }
    if (-not $Reset) { return }
    foreach ($file in Get-ChildItem -LiteralPath $IdentityDir -Force -File) {
        Invoke-Native "icacls /reset $($file.Name)" { icacls.exe $file.FullName /reset /Q } | Out-Null
    }
}

function Write-Password([string]$ServiceSid, [string]$Password) {
    # An earlier file is readable only by SYSTEM and the service: replace it.
    if (Test-Path -LiteralPath $PasswordFile) { Remove-Item -LiteralPath $PasswordFile -Force }
    Write-Utf8 $PasswordFile $Password
    Invoke-Icacls $PasswordFile @('/inheritance:r', '/grant:r',
        "*${SidSystem}:F", "*${ServiceSid}:R") $PasswordFile
}

function Write-Config([hashtable]$V, [string[]]$PlanKeys) {
    $quoted = ($PlanKeys | ForEach-Object { "'$_'" }) -join ', '
    $values = [ordered]@{
        '@@STATE_DIR@@'     = $StateDir
        '@@DB_HOST@@'       = $V.DbHost
        '@@DB_PORT@@'       = [string]$V.DbPort
        '@@DB_NAME@@'       = $V.DbName
        '@@DB_USER@@'       = $V.DbUser
        '@@PASSWORD_FILE@@' = $PasswordFile
        '@@COLLECTOR@@'     = $V.Collector
        '@@SPOOL_DIR@@'     = $SpoolDir
        '@@PLAN_KEYS@@'     = $quoted
    }
    $text = $AgentTomlTemplate
    foreach ($token in $values.Keys) { $text = $text.Replace($token, $values[$token]) }
    $text = $text -replace "`r?`n", "`r`n"
    if (Test-Path -LiteralPath $ConfigFile) {
        $old = [IO.File]::ReadAllText($ConfigFile)
        if ($old -eq $text) {
            Say "configuração sem mudanças: $ConfigFile" "configuration unchanged"
            return
        }
        Copy-Item -LiteralPath $ConfigFile -Destination "$ConfigFile.bak" -Force
        Say "agent.toml anterior salvo em $ConfigFile.bak" "previous agent.toml saved as agent.toml.bak"
    }
    Write-Utf8 $ConfigFile $text
    Say "configuração escrita em $ConfigFile" "configuration written to $ConfigFile"
}

# `doctor` (or, in a build without it, `check`) as SYSTEM, through a
# one-off scheduled task: the password and the key are not readable by
# Administrators. Returns the exit code; prints the report.
function Invoke-Doctor {
    $help = (Invoke-Captured { & $ExePath --help }).Output
    if ($help -match '(?m)^\s+doctor\s') {
        $cmdArgs = "doctor --config `"$ConfigFile`" --lang pt"
    } else {
        $cmdArgs = "check --config `"$ConfigFile`""
    }
    # The report goes where only SYSTEM and Administrators write (config\):
    # in logs\ the service could plant a junction and an object-manager
    # link, and SYSTEM's redirection would then overwrite any file.
    $report = Join-Path $ConfigDir 'install-doctor.txt'
    Assert-NotReparsePoint $ConfigDir
    $taskName = 'transmissor-agent-doctor'
    Remove-Item -LiteralPath $report -Force -ErrorAction SilentlyContinue
    $action = New-ScheduledTaskAction -Execute 'cmd.exe' `
        -Argument "/d /c `"`"$ExePath`" $cmdArgs > `"$report`" 2>&1`""
    $principal = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest
    Register-ScheduledTask -TaskName $taskName -Action $action -Principal $principal -Force | Out-Null
    try {
        Start-ScheduledTask -TaskName $taskName
        # 0x41301: running; 0x41303: not run yet (the state may still say
        # Ready just after the start).
        $deadline = (Get-Date).AddMinutes(3)
        do {
            Start-Sleep -Seconds 1
            $state = (Get-ScheduledTask -TaskName $taskName).State
            $last = (Get-ScheduledTaskInfo -TaskName $taskName).LastTaskResult
            $done = $state -ne 'Running' -and $last -ne 0x41301 -and $last -ne 0x41303
        } while (-not $done -and (Get-Date) -lt $deadline)
        if (-not $done) {
            Stop-ScheduledTask -TaskName $taskName
            Warn 'o diagnóstico não terminou em 3 minutos' 'the doctor did not finish within 3 minutes'
            $code = 1
        } else {
            $code = $last
        }
    } finally {
        Unregister-ScheduledTask -TaskName $taskName -Confirm:$false
    }
    if (Test-Path -LiteralPath $report) { Write-Host ([IO.File]::ReadAllText($report)) }
    $code
}

function Test-Identity {
    (Test-Path -LiteralPath (Join-Path $IdentityDir 'agent.key')) -and
    (Test-Path -LiteralPath (Join-Path $IdentityDir 'agent.pem'))
}

# A one-time token: -Token, else TRANSMISSOR_ENROLL_TOKEN, else a prompt;
# handed to the agent in its environment (not on its command line).
function Register-Identity([string]$ServiceSid, [string]$CollectorUrl) {
    if (Test-Identity) {
        Say 'identidade do agente já existe: inscrição pulada' 'agent identity exists: enrollment skipped'
        Set-IdentityAcl $ServiceSid
        return
    }
    $tok = $Token
    if (-not $tok) { $tok = $env:TRANSMISSOR_ENROLL_TOKEN }
    if (-not $tok) {
        $tok = ConvertFrom-Secure (Read-Host -AsSecureString 'Token de inscrição (fornecido pela equipe central)')
    }
    if (-not $tok) { Fail 'sem token de inscrição' 'no enrollment token' }
    Say "inscrevendo o agente no coletor $CollectorUrl" "enrolling the agent with $CollectorUrl"
    $saved = $env:TRANSMISSOR_ENROLL_TOKEN
    $env:TRANSMISSOR_ENROLL_TOKEN = $tok
    try {
        $r = Invoke-Captured { & $ExePath enroll --config $ConfigFile --collector $CollectorUrl }
    } finally {
        $env:TRANSMISSOR_ENROLL_TOKEN = $saved
    }
    Write-Host $r.Output
    if ($r.Code -ne 0) {
        Fail "a inscrição falhou (código $($r.Code)); o token vale uma vez e expira: peça outro se preciso" 'enrollment failed'
    }
    Set-IdentityAcl $ServiceSid -Reset
}

function Set-Password([string]$ServiceSid, [string]$User) {
    $password = $null
    if ($DbPasswordFile) {
        $password = [IO.File]::ReadAllText((Resolve-Path -LiteralPath $DbPasswordFile).ProviderPath).TrimEnd("`r", "`n")
    } elseif (-not (Test-Path -LiteralPath $PasswordFile)) {
        $password = ConvertFrom-Secure (Read-Host -AsSecureString "Senha do usuário $User no PostgreSQL")
    }
    if ($null -eq $password) {
        Say 'senha do banco mantida' 'database password kept'
        Invoke-Icacls $PasswordFile @('/inheritance:r', '/grant:r',
            "*${SidSystem}:F", "*${ServiceSid}:R") $PasswordFile
        return
    }
    if (-not $password) { Fail 'senha vazia' 'empty password' }
    Write-Password $ServiceSid $password
    Say "senha gravada em $PasswordFile (legível só por SYSTEM e pelo serviço)" "password stored, readable by SYSTEM and the service only"
    if ($DbPasswordFile) {
        Warn "apague $DbPasswordFile: a senha já está guardada" "delete $DbPasswordFile"
    }
}

function Start-Agent {
    Say 'iniciando o serviço' 'starting the service'
    try {
        Start-Service -Name $ServiceName
        Start-Sleep -Seconds 3
        $status = (Get-Service -Name $ServiceName).Status
    } catch {
        $status = "erro: $($_.Exception.Message)"
    }
    if ($status -ne 'Running') {
        $log = Get-ChildItem -LiteralPath $LogDir -Filter 'transmissor-agent.*.log' -ErrorAction SilentlyContinue |
            Sort-Object LastWriteTime | Select-Object -Last 1
        if ($log) { Get-Content -LiteralPath $log.FullName -Tail 20 -Encoding UTF8 | Write-Host }
        Fail "o serviço não ficou em execução ($status); veja o log acima e 'sc.exe query $ServiceName' (LEIA-ME.md)" 'the service did not keep running'
    }
    Say 'serviço em execução' 'service running'
}

function Install-Agent {
    $source = Join-Path $PSScriptRoot $ExeName
    if (-not (Test-Path -LiteralPath $source)) {
        Fail "$ExeName não está ao lado do script ($PSScriptRoot): extraia o zip inteiro" "$ExeName is not next to the script"
    }

    # Parameters given now win; the rest come from the existing agent.toml.
    $old = Read-ExistingConfig
    $v = @{ Collector = $Collector; DbHost = $DbHost; DbPort = $DbPort; DbName = $DbName; DbUser = $DbUser }
    $fromFile = @{
        Collector = 'collector.endpoint'; DbHost = 'source.host'; DbPort = 'source.port'
        DbName = 'source.dbname'; DbUser = 'source.user'
    }
    foreach ($k in @($fromFile.Keys)) {
        if (-not $Given.ContainsKey($k) -and $old.ContainsKey($fromFile[$k])) {
            $v[$k] = $old[$fromFile[$k]]
        }
    }
    $planKeys = $PlanKey
    if (-not $planKeys -and $old.ContainsKey('plan.keys')) { $planKeys = $old['plan.keys'] }

    if (-not $v.Collector) { $v.Collector = Read-Host 'Endereço do coletor (https://HOST:PORTA)' }
    if (-not $v.DbUser) { $v.DbUser = Read-Host "Usuário somente-leitura do banco $($v.DbName)" }
    if (-not $planKeys) {
        $planKeys = (Read-Host 'Chave(s) pública(s) dos planos (ed25519:..., separadas por vírgula)') -split '\s*,\s*'
    }
    $planKeys = @($planKeys | ForEach-Object { $_.Trim() } | Where-Object { $_ } | Select-Object -Unique)

    if ($v.Collector -notmatch '^https://[A-Za-z0-9.\-]+(:\d+)?/?$') {
        Fail "coletor inválido: '$($v.Collector)' (esperado https://HOST:PORTA)" 'invalid collector address'
    }
    $v.Collector = $v.Collector.TrimEnd('/')
    foreach ($field in @('DbHost', 'DbName', 'DbUser')) {
        if ($v[$field] -notmatch '^[A-Za-z0-9_.\-]+$') {
            Fail "valor inválido para -${field}: '$($v[$field])'" "invalid -$field"
        }
    }
    $v.DbPort = [int]$v.DbPort
    if ($v.DbPort -lt 1 -or $v.DbPort -gt 65535) { Fail "porta inválida: $($v.DbPort)" 'invalid port' }
    if ($planKeys.Count -eq 0) { Fail 'nenhuma chave de plano (-PlanKey)' 'no plan key' }
    foreach ($key in $planKeys) {
        if ($key -notmatch '^ed25519:[A-Za-z0-9+/]{43}=$') {
            Fail "chave de plano inválida: '$key' (esperado ed25519:<base64>)" 'invalid plan key'
        }
    }
    foreach ($p in @($DataDir, $InstallDir)) {
        if ($p.Contains("'")) { Fail "caminho com apóstrofo não suportado: $p" 'paths with an apostrophe are not supported' }
    }

    Stop-Agent
    Say "copiando $ExeName para $InstallDir" "copying $ExeName to $InstallDir"
    New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
    Copy-Item -LiteralPath $source -Destination $ExePath -Force
    $version = (Invoke-Captured { & $ExePath --version }).Output.Trim()
    Say "instalado: $version" "installed: $version"

    # The service (so its virtual account) exists before the ACLs name it.
    Register-Agent
    $serviceSid = Get-ServiceSid $ServiceName
    Set-DataDirAcls $serviceSid
    Write-Config $v $planKeys
    Set-Password $serviceSid $v.DbUser
    Register-Identity $serviceSid $v.Collector
    Start-Agent

    $code = 0
    if (-not $SkipDoctor) {
        Say 'executando o diagnóstico (doctor) como SYSTEM' 'running the doctor as SYSTEM'
        $code = Invoke-Doctor
        if ($code -eq 0) {
            Say 'diagnóstico: tudo certo' 'doctor: all good'
        } else {
            Warn "o diagnóstico encontrou problemas (código $code): corrija e execute '$ExePath doctor --config $ConfigFile' ou este instalador de novo" 'the doctor found problems'
        }
    }
    Write-Host ''
    Say 'instalação concluída' 'installed'
    Write-Host "    programa:      $ExePath"
    Write-Host "    configuração:  $ConfigFile"
    Write-Host "    logs:          $LogDir"
    Write-Host "    serviço:       $ServiceName (Get-Service $ServiceName)"
    exit $code
}

if ($KeepSpool -and -not $Uninstall) {
    Fail '-KeepSpool só vale com -Uninstall' '-KeepSpool only goes with -Uninstall'
}
if ($Uninstall) {
    Uninstall-Agent
    exit 0
}
Install-Agent
